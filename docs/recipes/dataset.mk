# Build a dataset folder in TASKS shares that run in parallel, then finish it:
#
#     make -f dataset.mk -j4 INPUT=data.jsonl TOKENIZER=tokenizer/ DATASET=dataset TASKS=4
#
# Each share is a target of its own, so `make -j` (or a make that farms recipes out to machines
# sharing the filesystem) runs them at once. The task records tokentype writes are the shares'
# targets; they are .SECONDARY, so once the folder is finished (and the records are gone) make
# does not build them again unless INPUT changes.
TOKENTYPE ?= tokentype
INPUT ?= data.jsonl
TOKENIZER ?= tokenizer
DATASET ?= dataset
TASKS ?= 4
OPTIONS ?= --max-seq-length 2048 --packing greedy::truncate_right --train-files 32 \
	--dev-ratio 0.05 --shuffle --seed 0

BUILD = $(TOKENTYPE) tokenize $(INPUT) --tokenizer $(TOKENIZER) --dataset $(DATASET) $(OPTIONS)
RECORDS := $(foreach k,$(shell seq 0 $$(($(TASKS) - 1))),.$(DATASET).tokentype-tasks/tasks/task_$(k)_of_$(TASKS).json)

$(DATASET)/metadata.yaml: $(RECORDS)
	$(BUILD) --finish --overwrite --quiet
	$(TOKENTYPE) validate $(DATASET) --quiet

.$(DATASET).tokentype-tasks/tasks/task_%_of_$(TASKS).json: $(INPUT)
	$(BUILD) --task $*/$(TASKS) --workers 1 --quiet

.SECONDARY: $(RECORDS)
