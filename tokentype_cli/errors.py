"""Domain exceptions. Each message is one line naming the file, dataset, row or line, and the fix."""


class TokentypeError(Exception):
    """Base for every error the library reports to a user; the CLI turns it into exit status 1."""


class ShardError(TokentypeError):
    """An HDF5 shard cannot be opened, read or written, or lacks the datasets the command needs."""


class DatasetExistsError(ShardError):
    """The dataset to be written already exists and the user did not ask to replace it."""


class SourceError(TokentypeError):
    """A source of token types (add-types) has the wrong shape, dtype or values."""


class TokenizerError(TokentypeError):
    """A tokenizer or vocabulary file cannot be loaded, or a token is not in it."""


class EncoderCheckError(TokenizerError):
    """The fast encoder cannot be shown to give the tokenizer's own ids; the message names the check."""

    def __init__(self, message: str, check: str) -> None:
        super().__init__(message)
        self.check = check


class InputError(TokentypeError):
    """A line of a text input (JSONL, TXT) is malformed; the message names file and line."""


class RuleError(TokentypeError):
    """A token-type rule is malformed or cannot be applied; the message names the rule."""


class OptionError(TokentypeError):
    """Options that are each valid but cannot be used together, or a value out of range."""


class TemplateError(TokentypeError):
    """A chat template cannot be found, read or compiled; the message names the file and line."""
