"""`make bench`: every Facet benchmark beside the same work in PyTorch (Python), alternating runs, one
table. Each row states the PyTorch program it is compared with (bench/<name>.py, same model, batch,
threads, dtype and optimiser); the ratio is Facet's time over PyTorch's (for throughputs, PyTorch's
rate over Facet's), so below 1.0 Facet is faster. Train-step rows come twice: (a) against PyTorch as
a user runs it by default, (b) against PyTorch with the tuning Facet applies (fused SGD, channels-last
where Facet uses it, glibc's malloc thresholds as Facet sets them), so the gain is honest.

    python bench/run.py BUILD_DIR [--rounds 3] [--threads N] [--only train,loader,...]

Writes the table to BUILD_DIR/bench/results.md and every run's numbers to BUILD_DIR/bench/results.json.
Parts: train, scaling, a3d, llm, vlm, detection, loader, lesion, distributed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

PYTHON = sys.executable
# glibc's allocator as every Facet training process sets it (data::keep_freed_buffers_in_the_heap),
# given to the tuned PyTorch runs through glibc's environment variables.
FACET_MALLOC = ["env", "MALLOC_MMAP_THRESHOLD_=67108864", "MALLOC_TRIM_THRESHOLD_=536870912"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Row:
    work: str
    facet: list
    torch: dict = field(default_factory=dict)   # reference label -> runs
    unit: str = "ms"
    higher_is_better: bool = False
    note: str = ""


def run(cmd, env=None):
    """Runs `cmd`; returns its JSON lines."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]


def value(lines, key, part=None):
    for line in lines:
        if part is None or line.get("part") == part:
            return float(line[key])
    raise SystemExit(f"bench: no {key} (part {part}) in {lines}")


def spread(xs):
    return 100 * (max(xs) - min(xs)) / statistics.median(xs) if len(xs) > 1 else 0.0


class Bench:
    def __init__(self, build, rounds, threads):
        self.build, self.rounds, self.threads = build, rounds, threads
        self.rows = []

    def exe(self, name):
        return os.path.join(self.build, "bench", name)

    def paired(self, work, facet_cmd, torch_cmds, key, part=None, higher=False, unit="ms", env=None, note=""):
        """Alternates Facet and each PyTorch command `rounds` times; one row per PyTorch reference."""
        self.paired_parts([(work, key, part, higher, unit)], facet_cmd, torch_cmds, env, note)

    def paired_parts(self, metrics, facet_cmd, torch_cmds, env=None, note=""):
        """As paired, for programs that print several results (one JSON line per part): one run of
        each side gives every metric (work, key, part, higher_is_better, unit) its value."""
        print(f"{metrics[0][0]}{' (+ more)' if len(metrics) > 1 else ''}: {self.rounds} rounds", flush=True)
        facet = [[] for _ in metrics]
        torch = [{label: [] for label in torch_cmds} for _ in metrics]
        for _ in range(self.rounds):
            lines = run(facet_cmd, env)
            for i, (_, key, part, _, _) in enumerate(metrics):
                facet[i].append(value(lines, key, part))
            for label, cmd in torch_cmds.items():
                lines = run(cmd, env)
                for i, (_, key, part, _, _) in enumerate(metrics):
                    torch[i][label].append(value(lines, key, part))
        for i, (work, _, _, higher, unit) in enumerate(metrics):
            self.rows.append(Row(work, facet[i], torch[i], unit, higher, note))

    def facet_only(self, work, facet_cmd, key, part=None, higher=False, unit="ms", note=""):
        print(f"{work}: {self.rounds} rounds", flush=True)
        runs = [value(run(facet_cmd), key, part) for _ in range(self.rounds)]
        self.rows.append(Row(work, runs, {}, unit, higher, note))

    def table(self):
        lines = ["| work | PyTorch program | Facet | PyTorch | ratio (time, Facet / PyTorch) | spread F / P |",
                 "|---|---|---|---|---|---|"]
        for r in self.rows:
            f = statistics.median(r.facet)
            refs = r.torch.items() or [(r.note or "(none)", None)]
            for label, runs in refs:
                if runs is None:
                    lines.append(f"| {r.work} | {label} | {f:.1f} {r.unit} | | | {spread(r.facet):.0f} % / |")
                    continue
                t = statistics.median(runs)
                ratio = t / f if r.higher_is_better else f / t
                shown = f"**{ratio:.2f}** ({f / t:.2f}x the rate)" if r.higher_is_better else f"**{ratio:.2f}**"
                lines.append(f"| {r.work} | {label} | {f:.1f} {r.unit} | {t:.1f} {r.unit} | {shown} | "
                             f"{spread(r.facet):.0f} % / {spread(runs):.0f} % |")
        return "\n".join(lines)


def train_rows(b):
    t = str(b.threads)
    step = b.exe("train_step_bench")
    # Channels-last where it pays on this CPU (measured: ResNet-50 at 224 px 0.87x the NCHW step;
    # ResNet-18 at 112 px and the small CNN are faster in NCHW).
    for model, batch, size, steps, warmup, channels_last in [
            ("resnet50", 8, 224, 4, 2, 1), ("simple_cnn", 32, 32, 200, 20, 0), ("resnet18", 16, 112, 20, 5, 0),
            ("vit_b16", 8, 224, 4, 2, 0)]:
        args = ["--model", model, "--batch", str(batch), "--size", str(size), "--steps", str(steps),
                "--warmup", str(warmup), "--threads", t]
        cl = ["--channels-last", str(channels_last)]
        b.paired(f"train step {model}, batch {batch}, {size} px, SGD momentum" + (", channels-last" if channels_last else ""),
                 [step, *args, *cl],
                 {"(a) bench/train_step.py default": [PYTHON, "bench/train_step.py", *args],
                  "(b) bench/train_step.py --fused 1" + (" --channels-last 1" if channels_last else "") + ", Facet's malloc":
                      [*FACET_MALLOC, PYTHON, "bench/train_step.py", *args, *cl, "--fused", "1"]},
                 "ms_per_step")
    b.facet_only("train step MGRR-Net demo (ResNet-18 trunk, dim 128), batch 16, 112 px",
                 [step, "--model", "mgrr_net", "--batch", "16", "--size", "112", "--steps", "10", "--warmup", "3",
                  "--threads", t], "ms_per_step", note="no public MGRR-Net implementation to compare with")


def loader_rows(b):
    """Facet's Loader against DataLoader on synthetic data in each dataset's published layout."""
    facet_cli = os.path.join(b.build, "tools", "cli", "facet")
    w = str(int(os.environ.get("BENCH_WORKERS", b.threads)))
    rows = [  # (label, dataset, synth writer + options, batch, Facet overrides, Python flags)
        ("BP4D JPEGs 256 px: resize 200, crop 176, flip, normalise", "bp4d", ["bp4d", "frames_per_sequence=30", "size=256"],
         32, [], []),
        ("BP4D JPEGs 1024 px (decoded at 1/4 scale): resize 200, crop 176, flip, normalise", "bp4d",
         ["bp4d", "frames_per_sequence=8", "size=1024"], 32, [], []),
        ("DeepLesion 16-bit PNG, 3 slices (3DCE), window, flip", "deeplesion", ["deeplesion", "size=512", "patients=40"],
         8, ["--set", "num_slices=3"], ["--slices", "3"]),
        ("DeepLesion 16-bit PNG, 7 slices (A3D/SATr), window, flip", "deeplesion", ["deeplesion", "size=512", "patients=40"],
         8, ["--set", "num_slices=7"], ["--slices", "7"]),
        ("VinDr-CXR 12-bit DICOM 1024 px: min-max, resize 512, flip, normalise", "vindr_cxr",
         ["vindr-cxr", "size=1024", "train=96", "test=4"], 16, [], []),
    ]
    for label, dataset, synth, batch, facet_extra, python_extra in rows:
        data = os.path.join(b.build, "bench_data", "_".join(x.replace("=", "") for x in synth))
        if not os.path.isdir(data):
            subprocess.run([facet_cli, "data", "synth", synth[0], "--out", data, *synth[1:]], check=True,
                           stdout=subprocess.DEVNULL, cwd=ROOT)
        common = ["--root", data, "--workers", w, "--batch", str(batch)]
        b.paired(f"loader: {label}; batch {batch}, {w} workers",
                 [b.exe("loader_bench"), "--config", f"bench/loaders/{dataset}.yaml", *common, *facet_extra],
                 {f"bench/loader.py --dataset {dataset} (DataLoader)": [PYTHON, "bench/loader.py", "--dataset", dataset,
                                                                       *common, *python_extra]},
                 "samples_per_s", higher=True, unit="samples/s")


def scaling_rows(b):
    """Time per step and peak memory against batch and image size (Facet, one run each)."""
    print("scaling: ResNet-50 and ViT-B/16, time per step and peak memory", flush=True)
    out = ["| model | batch | size | ms/step | images/s | peak RSS |", "|---|---|---|---|---|---|"]
    for model, points in [("resnet50", [(1, 224), (4, 224), (8, 224), (16, 224), (8, 112), (8, 160), (8, 320)]),
                          ("vit_b16", [(1, 224), (4, 224), (8, 224), (16, 224), (8, 112), (8, 160)])]:
        for batch, size in points:
            cmd = [b.exe("train_step_bench"), "--model", model, "--batch", str(batch), "--size", str(size), "--steps", "3",
                   "--warmup", "1", "--threads", str(b.threads), "--channels-last", "1" if model == "resnet50" else "0"]
            lines = run(cmd)
            ms, rss = value(lines, "ms_per_step"), value(lines, "peak_rss_mib")
            out.append(f"| {model} | {batch} | {size} | {ms:.0f} | {1000 * batch / ms:.1f} | {rss:.0f} MiB |")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("build")
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 3)))
    p.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", os.cpu_count())))
    p.add_argument("--only", default=os.environ.get("BENCH_ONLY", "train,scaling,a3d,diffusion,gvs,llm,vlm,detection,loader,lesion,distributed"))
    a = p.parse_args()
    parts = set(a.only.split(","))
    b = Bench(a.build, a.rounds, a.threads)
    t = str(a.threads)
    extra = []
    if "train" in parts:
        train_rows(b)
    if "diffusion" in parts:
        b.paired("Custom Diffusion train step, SD 1.x layout at width 64, 2 x 128 px", [b.exe("diffusion_bench"), "--threads", t],
                 {"bench/diffusion.py (diffusers + transformers)": [PYTHON, "bench/diffusion.py", "--threads", t]},
                 "ms_per_step")
    if "gvs" in parts:
        b.paired("GVS train step (generator + segmentor phases), published widths, 2 x 128 px",
                 [b.exe("pseudo_healthy_bench"), "--threads", t],
                 {"bench/pseudo_healthy.py (GVS main.py's loop)": [PYTHON, "bench/pseudo_healthy.py", "--threads", t]},
                 "ms_per_step")
    if "a3d" in parts:
        b.paired("A3D DenseNet-121 + SATr, forward + backward, 1 x 7 slices x 512 px", [b.exe("a3d_satr_bench"), "--threads", t],
                 {"bench/a3d_satr.py (transcription of the release)": [PYTHON, "bench/a3d_satr.py", "--threads", t]},
                 "ms_per_step")
    # Passive OpenMP waits on both sides: on a shared machine busy-waiting threads dominate the time.
    passive = {"OMP_WAIT_POLICY": "PASSIVE"}
    for part, name, work in [("llm", "llm", "~110M LLaMA"), ("vlm", "vlm", "small LLaVA")]:
        if part in parts:
            b.paired_parts([(f"{work}: LoRA train step", "ms_per_step", "train", False, "ms"),
                            (f"{work}: greedy generation", "tokens_per_s", "generate", True, "tok/s")],
                           [b.exe(f"{name}_bench"), "--threads", t],
                           {f"bench/{name}.py (transformers + PEFT)": [PYTHON, f"bench/{name}.py", "--threads", t]},
                           env=passive)
    if "detection" in parts:
        for args in (["--what", "nms", "--boxes", "12000", "--steps", "10", "--warmup", "2"],
                     ["--what", "roi_align", "--rois", "1024", "--steps", "5", "--warmup", "1"],
                     ["--what", "faster_rcnn", "--size", "320", "--batch", "2", "--steps", "3", "--warmup", "1"]):
            b.paired(f"detection {args[1]}", [b.exe("detection_bench"), *args, "--threads", t],
                     {"bench/detection.py (torchvision)": [PYTHON, "bench/detection.py", *args, "--threads", t]}, "ms_per_step")
    if "loader" in parts:
        loader_rows(b)
    if "lesion" in parts:
        lines = run([b.exe("lesion_switches_bench"), "--rounds", str(a.rounds), "--threads", t])
        r = lines[0]
        rows = [f"lesion-detection switches ({r['size']} px, {r['backbone']} backbone), ms/step and ratio to the plain detector:"]
        rows += [f"  {n:<18} {x['ms']:8.1f} ms  x{x['ratio']:.2f}" for n, x in r["variants"].items()]
        extra.append("\n".join(rows))
    if "distributed" in parts:
        out = subprocess.run([b.exe("distributed_overlap_bench"), "--steps", "20"], check=True, capture_output=True,
                             text=True, cwd=ROOT).stdout
        extra.append("data-parallel step, 2 Gloo ranks (all-reduce after backward vs overlapped):\n" + out.strip())
    if "scaling" in parts:
        extra.append(scaling_rows(b))

    report = "\n\n".join([f"# make bench ({a.threads} threads, {a.rounds} rounds, medians)", b.table(), *extra]) + "\n"
    print("\n" + report)
    os.makedirs(os.path.join(a.build, "bench"), exist_ok=True)
    with open(os.path.join(a.build, "bench", "results.md"), "w") as f:
        f.write(report)
    with open(os.path.join(a.build, "bench", "results.json"), "w") as f:
        json.dump([r.__dict__ for r in b.rows], f, indent=1)
    print(f"written: {os.path.join(a.build, 'bench', 'results.md')}")


if __name__ == "__main__":
    main()
