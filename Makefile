# Facet — the two commands a newcomer runs are `make demo` and `make test`; both set everything up.
# Everything else is a convenience around CMake + ctest (see README.md).

SHELL       := /bin/bash
.SHELLFLAGS := -eo pipefail -c

BUILD      ?= build
BUILD_TYPE ?= Release
JOBS       ?= $(shell nproc)
CTEST_ARGS ?=
ENV_FILE   := $(BUILD)/bootstrap.env
# Read the bootstrap's results (venv, torch prefix) inside recipes.
LOAD_ENV   := set -a && . ./$(ENV_FILE) && set +a

.PHONY: all deps configure build build-cli test demo asan tsan fuzz goldens bench gpu-check gpu-bundle clean help

all: build

help:
	@echo "make demo     set up, build and run the main job"
	@echo "make test     set up, build and run every test (ctest)"
	@echo "make asan     the same tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
	@echo "make tsan     the loader and distributed-training tests under ThreadSanitizer (build-tsan/)"
	@echo "make fuzz     run every fuzzer longer (FUZZ_SECONDS each, default 300)"
	@echo "make goldens  regenerate tests/fixtures with the reference Python libraries"
	@echo "make bench    benchmarks against PyTorch (Python) on this machine"
	@echo "make gpu-check  the GPU tests, 2 ranks on one GPU and the GPU benchmarks, one table (builds only, without a GPU)"
	@echo "make gpu-bundle the GPU check's executables + libraries, packed to run on a GPU machine that cannot build (build/gpu_bundle.tar.xz)"

# Debian packages + the Python venv with the pinned torch wheel; writes $(ENV_FILE) only when it changes.
deps:
	@mkdir -p $(BUILD)
	@tools/bootstrap.sh > $(ENV_FILE).new
	@if cmp -s $(ENV_FILE).new $(ENV_FILE); then rm $(ENV_FILE).new; else mv $(ENV_FILE).new $(ENV_FILE); fi

configure: deps
	@if [ ! -f $(BUILD)/build.ninja ] || [ $(ENV_FILE) -nt $(BUILD)/build.ninja ]; then \
	  $(LOAD_ENV) && cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	    -DCMAKE_PREFIX_PATH="$$FACET_TORCH_PREFIX" -DFACET_PYTHON="$$FACET_VENV/bin/python" $(CMAKE_ARGS) \
	    | grep -v -e 'kineto' ; \
	fi

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# Only the `facet` executable: what the demo runs (the test executables build under `make test`).
build-cli: configure
	cmake --build $(BUILD) -j $(JOBS) --target facet

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# The demo: a synthetic BP4D in its published layout, MGRR-Net trained on it (reduced for CPU), the
# per-AU F1 table against the all-positive baseline, TensorBoard logs and a picture of predictions.
DEMO_DATA := $(BUILD)/demo/bp4d_synth
DEMO_RUN  := runs/demo_mgrr_net_bp4d
demo: build-cli
	$(BUILD)/tools/cli/facet info
	@if [ ! -f $(DEMO_DATA)/AUCoding/AU_OCC/M003_T8.csv ]; then \
	  $(BUILD)/tools/cli/facet data synth bp4d --out $(DEMO_DATA) frames_per_sequence=20; fi
	rm -rf $(DEMO_RUN)
	$(BUILD)/tools/cli/facet train experiments/demo/mgrr_net_bp4d.yaml data.root=$(DEMO_DATA) --run-dir $(DEMO_RUN)
	$(BUILD)/tools/cli/facet eval $(DEMO_RUN)
	@echo
	@echo "Run directory:   $(DEMO_RUN)  (config.yaml, log.txt, metrics.csv, checkpoints/, eval/)"
	@echo "Per-AU table:    $(DEMO_RUN)/eval/test_per_label.csv"
	@echo "Predictions:     $(DEMO_RUN)/eval/test_labels.png  (true AUs green when found, orange when missed; false positives red)"
	@echo "TensorBoard:     tensorboard --logdir $(DEMO_RUN)"

asan:
	$(MAKE) test BUILD=build-asan BUILD_TYPE=RelWithDebInfo CMAKE_ARGS=-DFACET_SANITIZE=ON

# ThreadSanitizer on the code that runs threads: the loader (worker threads, prefetch, shutdown) and
# data-parallel training (c10d process groups, gradient buckets, the overlap hook). LibTorch's OpenMP
# pool is not instrumented, so the run keeps intra-op parallelism at one thread (TSan would report
# its synchronisation as races).
TSAN_TESTS ?= ^(data\.Loader|data\.Pack|train\.Distributed)\.
tsan:
	$(MAKE) configure BUILD=build-tsan BUILD_TYPE=RelWithDebInfo CMAKE_ARGS="-DFACET_TSAN=ON -DFACET_FUZZ=OFF"
	cmake --build build-tsan -j $(JOBS) --target facet_data_tests facet_train_tests facet
	cd build-tsan && OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/support/tsan.supp" \
	  ctest --output-on-failure -j $(JOBS) -R '$(TSAN_TESTS)' $(CTEST_ARGS)

FUZZ_SECONDS ?= 300
fuzz: build
	tests/fuzz/run_fuzzer.sh $(BUILD)/tests/fuzz/fuzz_safetensors_header tests/fixtures '*.safetensors' $(BUILD)/tests/fuzz/corpus_fuzz_safetensors_header $(FUZZ_SECONDS)
	tests/fuzz/run_fuzzer.sh $(BUILD)/tests/fuzz/fuzz_csv tests/fixtures '*.csv' $(BUILD)/tests/fuzz/corpus_fuzz_csv $(FUZZ_SECONDS)
	tests/fuzz/run_fuzzer.sh $(BUILD)/tests/fuzz/fuzz_safetensors_index tests/fixtures '*.index.json' $(BUILD)/tests/fuzz/corpus_fuzz_safetensors_index $(FUZZ_SECONDS)
	tests/fuzz/run_fuzzer.sh $(BUILD)/tests/fuzz/fuzz_config tests/fixtures '*.yaml' $(BUILD)/tests/fuzz/corpus_fuzz_config $(FUZZ_SECONDS)
	tests/fuzz/run_fuzzer.sh $(BUILD)/tests/fuzz/fuzz_dicom tests/fixtures '*.dcm' $(BUILD)/tests/fuzz/corpus_fuzz_dicom $(FUZZ_SECONDS)
	tests/fuzz/run_fuzzer.sh $(BUILD)/tests/fuzz/fuzz_image tests/fixtures '*.png *.jpg' $(BUILD)/tests/fuzz/corpus_fuzz_image $(FUZZ_SECONDS)
	tests/fuzz/run_fuzzer.sh $(BUILD)/tests/fuzz/fuzz_npy tests/fixtures '*.npy' $(BUILD)/tests/fuzz/corpus_fuzz_npy $(FUZZ_SECONDS)
	tests/fuzz/run_fuzzer.sh $(BUILD)/tests/fuzz/fuzz_nifti tests/fixtures '*.nii *.nii.gz' $(BUILD)/tests/fuzz/corpus_fuzz_nifti $(FUZZ_SECONDS)
	tests/fuzz/run_fuzzer.sh $(BUILD)/tests/fuzz/fuzz_pack tests/fixtures '*.h5' $(BUILD)/tests/fuzz/corpus_fuzz_pack $(FUZZ_SECONDS)

goldens: deps
	$(LOAD_ENV) && for script in tools/golden/*_golden.py; do "$$FACET_VENV/bin/python" "$$script" || exit 1; done

bench: configure
	cmake --build $(BUILD) -j $(JOBS) --target facet facet_benchmarks
	$(LOAD_ENV) && "$$FACET_VENV/bin/python" bench/run.py $(BUILD)

# tools/gpu_check.sh: builds what it needs, then (only where LibTorch sees a GPU) the GPU tests,
# two ranks on one GPU and the bf16 train-step benchmarks against PyTorch, in one table.
gpu-check: configure
	$(LOAD_ENV) && tools/gpu_check.sh --build $(BUILD) --python "$$FACET_VENV/bin/python" --jobs $(JOBS)

# tools/gpu_bundle.sh: the GPU check's four executables, with every library they need that the torch
# wheel and glibc do not provide, as $(BUILD)/gpu_bundle.tar.xz for a GPU machine that cannot build
# Facet (README.md, "On a GPU"). The script packs what is built; this target builds it first.
gpu-bundle: configure
	cmake --build $(BUILD) -j $(JOBS) --target facet facet_gpu_tests train_step_bench emola_step_bench
	tools/gpu_bundle.sh --build $(BUILD)

clean:
	rm -rf $(BUILD) build-asan build-tsan
