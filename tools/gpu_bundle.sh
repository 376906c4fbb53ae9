#!/usr/bin/env bash
# `make gpu-bundle`: the GPU check's executables, built here, packed to run on a GPU machine that
# cannot build Facet (no Debian -dev packages, nothing to fetch) but has Python with the same torch
# wheel (2.11.0+cu130). Builds nothing: it packs what BUILD already holds (`make gpu-check` builds
# it on a machine without a GPU), as BUILD/gpu_bundle/ and BUILD/gpu_bundle.tar.xz:
#   bin/                 facet, facet_gpu_tests, train_step_bench, emola_step_bench: small wrappers
#                        that run exe/NAME with LD_LIBRARY_PATH set to lib/ + that machine's torch
#                        wheel (torch/lib and nvidia/*/lib, found through its python3), for these
#                        programs alone (the PyTorch side of the benchmarks keeps its own libraries);
#   exe/                 the four executables, stripped (their RUNPATH names this machine's venv);
#   lib/                 every shared library they load that neither the torch wheel nor the base
#                        system (glibc, libstdc++, libgcc_s) provides: OpenCV, HDF5, DCMTK, dlib,
#                        yaml-cpp, SentencePiece... and their dependencies, stripped; libraries
#                        reached only through OpenCV's video and GDAL back ends (FFmpeg, GStreamer,
#                        GDAL, ICU...), which the GPU check never calls but the loader insists on,
#                        are replaced by stubs: the same name, symbols and symbol versions, each
#                        function aborting with its name if it is ever called (GDALAllRegister,
#                        called by OpenCV's first imread, returns instead);
#   lib-fallback/        this machine's libstdc++ and libgcc_s, used only where the GPU machine's
#                        lack a symbol version the bundle needs;
#   run_gpu_check.sh     runs tools/gpu_check.sh --bin-dir bin/ from the repository (its options
#                        pass through: --only, --rounds, --dry-run...);
#   MANIFEST             what was packed, from which commit, and what the bundle needs of the
#                        machine (glibc, libstdc++, the torch version).
# It checks what it packed: with LD_LIBRARY_PATH set as run_gpu_check.sh sets it, every library
# must resolve inside the bundle, the torch wheel or the base system, and `facet --help` must start
# with every symbol bound at once (LD_BIND_NOW=1). Then it prints the archive's size and the working
# tree's, which travel together (at most 64 MiB).
#
#   tools/gpu_bundle.sh [--build DIR] [--out DIR] [--stub REGEX] [--no-stubs] [--no-archive]
#
# On the GPU machine, from the repository root, with build/gpu_bundle.tar.xz carried there:
#   { tar -C build -xJf build/gpu_bundle.tar.xz || python3 -m tarfile -e build/gpu_bundle.tar.xz build; } &&
#     build/gpu_bundle/run_gpu_check.sh --only tests,two-ranks
# (README.md, "On a GPU", gives the commands of a session with a lent GPU machine.)
# --stub REGEX replaces the default choice of stubbed libraries (a Python regular expression
# matched against the library's file name); --no-stubs packs every library (about 86 MB compressed,
# too big to travel).
set -euo pipefail
cd "$(dirname "$0")/.."

build=build
dest=
archive=1
stub_re='^lib(gdal|av(codec|format|util|device|filter)|sw(scale|resample)|gst[a-z]*-1\.0|dc1394|gphoto2(_port)?|icuuc)\.so'
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --out) dest=$2; shift 2 ;;
    --stub) stub_re=$2; shift 2 ;;
    --no-stubs) stub_re=; shift ;;
    --no-archive) archive=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gpu_bundle.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
bundle=${dest:-$build/gpu_bundle}
exes=(tools/cli/facet tests/facet_gpu_tests bench/train_step_bench bench/emola_step_bench)
for e in "${exes[@]}"; do
  [ -x "$build/$e" ] || { echo "gpu_bundle.sh: $build/$e is missing; build it first (\`make gpu-check\` on a machine without a GPU builds it)" >&2; exit 2; }
done
for tool in ldd readelf strip cc python3; do
  command -v "$tool" > /dev/null || { echo "gpu_bundle.sh: needs $tool" >&2; exit 2; }
done
# The venv's python (the torch wheel the executables were linked with) checks the bundle here.
venv_python=$(sed -n 's/^FACET_TEST_PYTHON:FILEPATH=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
venv_python=${venv_python:-${FACET_VENV:+$FACET_VENV/bin/python}}
[ -x "${venv_python:-}" ] || { echo "gpu_bundle.sh: cannot find the venv's python (FACET_TEST_PYTHON in $build/CMakeCache.txt, or FACET_VENV)" >&2; exit 2; }
source_dir=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
source_dir=${source_dir:-$PWD}

rm -rf "$bundle"
mkdir -p "$bundle"/{bin,exe,lib,lib-fallback}
bundle=$(cd "$bundle" && pwd)
echo "gpu_bundle.sh: packing ${exes[*]} from $build into $bundle"

# --- the libraries: which to copy, which to stub, which the GPU machine has ----------------------------
torch_version=$("$venv_python" -c 'import importlib.metadata as m; print(m.version("torch"))')
python3 - "$bundle" "$stub_re" "$build" "${exes[@]}" <<'PY'
import glob, os, re, shutil, subprocess, sys

bundle, stub_re, build, exes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
exes = [os.path.join(build, e) for e in exes]
stub_pat = re.compile(stub_re) if stub_re else None
# glibc's own libraries: every Linux has them (the run script checks the version).
base = re.compile(r'^(linux-vdso|ld-linux-x86-64|libc|libm|libdl|libpthread|librt|libutil|libresolv|libanl|libmvec)\.so')
runtime = re.compile(r'^(libstdc\+\+|libgcc_s)\.so')  # GCC's: the machine's own, unless too old
NOOP = re.compile(r'^GDALAllRegister$')  # stubbed functions that return instead of aborting


def run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def needed(path):
    return re.findall(r'\(NEEDED\)\s+Shared library: \[(.*)\]', run('readelf', '-d', path))


# Where each library resolves here (ldd follows the executables' RUNPATH to the venv's torch).
where = {}
for exe in exes:
    for line in run('ldd', exe).splitlines():
        m = re.match(r'\s*(\S+) => (.*) \(0x', line)
        if m:
            where[m.group(1)] = m.group(2)
        elif 'not found' in line:
            sys.exit(f'gpu_bundle.sh: {exe}: {line.strip()}')
torch_lib = os.path.dirname(where['libtorch.so'])
wheel_dirs = [torch_lib] + sorted(glob.glob(os.path.join(torch_lib, '..', '..', 'nvidia', '*', 'lib')))
wheel = {n for d in wheel_dirs for n in os.listdir(d)}

keep, stubs, fallback, provided = [], [], [], []
seen, todo = set(), [n for e in exes for n in needed(e)]
while todo:
    name = todo.pop(0)
    if name in seen:
        continue
    seen.add(name)
    if base.match(name):
        continue
    if name in wheel:  # libtorch*, libc10*, libcudart, cuDNN, NCCL...: the machine's torch wheel
        provided.append(name)
        continue
    path = where.get(name)
    if path is None:
        sys.exit(f'gpu_bundle.sh: {name} is needed but ldd did not resolve it')
    if runtime.match(name):
        fallback.append(name)
        continue
    if stub_pat and stub_pat.match(name):
        stubs.append(name)
        continue
    keep.append(name)
    todo += needed(path)


def strip_copy(src, dst):
    subprocess.run(['strip', '--strip-unneeded', '-o', dst, src], check=True)
    shutil.copymode(src, dst)


for name in keep:
    strip_copy(where[name], os.path.join(bundle, 'lib', name))
for name in fallback:
    shutil.copy(where[name], os.path.join(bundle, 'lib-fallback', name))
for exe in exes:
    strip_copy(exe, os.path.join(bundle, 'exe', os.path.basename(exe)))


# --- stubs: the real library's dynamic symbols and versions, nothing behind them ----------------------
def make_stub(name, path, out):
    verdefs = []
    section = None
    for line in run('readelf', '-V', '-W', path).splitlines():
        if 'Version definition section' in line:
            section = 'd'
        elif 'Version needs section' in line or 'Version symbols section' in line:
            section = None
        elif section == 'd':
            m = re.search(r'Flags: (\S+)\s+Index: \d+\s+Cnt: \d+\s+Name: (\S+)', line)
            if m and m.group(1) != 'BASE':
                verdefs.append(m.group(2))
    syms = []
    for line in run('readelf', '--dyn-syms', '-W', path).splitlines():
        f = line.split()
        if len(f) < 8 or not f[0].endswith(':') or f[6] == 'UND' or f[4] not in ('GLOBAL', 'WEAK', 'UNIQUE'):
            continue
        size = int(f[2], 16) if f[2].startswith('0x') else int(f[2])
        sym, ver, default = f[7], None, True
        if '@@' in sym:
            sym, ver = sym.split('@@')
        elif '@' in sym:
            sym, ver = sym.split('@')
            default = False
        if f[6] == 'ABS' and sym in verdefs:
            continue  # the version node's own symbol
        syms.append((sym, ver, default, f[3], f[4], size))
    asm = ['\t.hidden facet_stub_fail', '\t.text']
    data, script = [], {v: [] for v in verdefs}
    for k, (sym, ver, default, kind, bind, size) in enumerate(syms):
        label = sym if default else f'facet_stub_{k}'
        decl = f'\t.weak {label}' if bind == 'WEAK' else f'\t.globl {label}'
        if ver and not default:
            decl += f'\n\t.symver {label}, {sym}@{ver}'
        elif ver in script:
            script[ver].append(sym)
        elif verdefs:
            script[verdefs[0]].append(sym)
        if kind in ('FUNC', 'IFUNC', 'NOTYPE') and not (kind == 'NOTYPE' and size):
            body = '\txorl %eax, %eax\n\tret' if NOOP.match(sym) else f'\tleaq .Lname{k}(%rip), %rdi\n\tjmp facet_stub_fail'
            asm += [decl, f'\t.type {label}, @function', '\t.p2align 4', f'{label}:', body]
            data += [f'.Lname{k}:', f'\t.asciz "{name}: {sym}"']
        elif kind == 'TLS':
            asm += ['\t.section .tbss,"awT",@nobits', decl, f'\t.type {label}, @tls_object', f'\t.size {label}, {size}',
                    '\t.p2align 4', f'{label}:', f'\t.zero {max(size, 1)}', '\t.text']
        else:  # data: zeros of the real object's size
            asm += ['\t.bss', decl, f'\t.type {label}, @object', f'\t.size {label}, {size}', '\t.p2align 4', f'{label}:',
                    f'\t.zero {max(size, 1)}', '\t.text']
    asm += ['\t.section .rodata'] + data + ['\t.section .note.GNU-stack,"",@progbits', '']
    work = out + '.d'
    os.makedirs(work)
    open(f'{work}/stub.s', 'w').write('\n'.join(asm))
    open(f'{work}/fail.c', 'w').write(
        '#include <stdlib.h>\n#include <string.h>\n#include <unistd.h>\n'
        '__attribute__((visibility("hidden"), noreturn)) void facet_stub_fail(const char* what) {\n'
        '  static const char head[] = "gpu bundle: a stub was called (tools/gpu_bundle.sh packed this library as a stub: '
        'rebuild the bundle with it left out of --stub): ";\n'
        '  if (write(2, head, sizeof head - 1) < 0 || write(2, what, strlen(what)) < 0 || write(2, "\\n", 1) < 0) abort();\n'
        '  abort();\n}\n')
    cmd = ['cc', '-shared', '-fPIC', '-O1', '-o', out, f'{work}/stub.s', f'{work}/fail.c', f'-Wl,-soname,{name}']
    if verdefs:
        with open(f'{work}/versions', 'w') as v:
            for i, ver in enumerate(verdefs):
                names = ''.join(f' {s};' for s in script[ver])
                v.write(f'{ver} {{ global:{names} {"local: *;" if i == 0 else ""} }};\n')
        cmd.append(f'-Wl,--version-script={work}/versions')
    subprocess.run(cmd, check=True)
    subprocess.run(['strip', '--strip-unneeded', out], check=True)
    shutil.rmtree(work)
    return len(syms)


stubbed = []
for name in stubs:
    n = make_stub(name, where[name], os.path.join(bundle, 'lib', name))
    stubbed.append(f'{name} ({n} symbols)')

# What the bundle needs of the machine's glibc and libstdc++ (the run script checks).
needs = set()
for f in glob.glob(os.path.join(bundle, 'exe', '*')) + glob.glob(os.path.join(bundle, 'lib', '*')):
    needs |= set(re.findall(r'Name: ((?:GLIBC|GLIBCXX|CXXABI|GCC)_[0-9.]+)', run('readelf', '-V', '-W', f)))


def vkey(v):
    return [int(x) for x in v.split('_', 1)[1].split('.')]


with open(os.path.join(bundle, 'MANIFEST.libs'), 'w') as m:
    m.write('copied: ' + ' '.join(sorted(keep)) + '\n')
    m.write('stubbed: ' + ', '.join(stubbed) + '\n')
    m.write('from the torch wheel there: ' + ' '.join(sorted(provided)) + '\n')
    m.write('fallback (used where the machine\'s are older): ' + ' '.join(fallback) + '\n')
    m.write('glibc: ' + max((v for v in needs if v.startswith('GLIBC_')), key=vkey) + '\n')
    m.write('libstdc++: ' + ' '.join(sorted((v for v in needs if v.startswith(('GLIBCXX_', 'CXXABI_'))), key=lambda v: (v.split('_')[0], vkey(v)))) + '\n')
print(f'  {len(keep)} libraries copied, {len(stubs)} stubbed, {len(provided)} left to the torch wheel')
PY

# --- the manifest, the wrappers and the run script -------------------------------------------------
# shellcheck disable=SC1091  # /etc/os-release: only its PRETTY_NAME
{
  echo "Facet GPU bundle (tools/gpu_bundle.sh), made $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  for e in "${exes[@]}"; do echo "executable: $e ($(date -u -r "$build/$e" +%Y-%m-%dT%H:%M:%SZ))"; done
  echo "torch: $torch_version"
  echo "source_dir: $source_dir"
  cat "$bundle/MANIFEST.libs"
} > "$bundle/MANIFEST"
rm "$bundle/MANIFEST.libs"

cat > "$bundle/ld_path.py" <<'PY'
# Prints the LD_LIBRARY_PATH the bundle's executables run with: lib/, lib-fallback/ where this
# machine's libstdc++ is older than the bundle's, then this python's torch wheel (torch/lib and
# nvidia/*/lib), found without importing torch. --explain says what it found on stderr.
import glob, importlib.metadata, importlib.util, os, platform, re, subprocess, sys

bundle = os.path.dirname(os.path.abspath(__file__))
manifest = dict(line.rstrip('\n').split(': ', 1) for line in open(os.path.join(bundle, 'MANIFEST')) if ': ' in line)
explain = '--explain' in sys.argv
note = (lambda *a: print('gpu bundle:', *a, file=sys.stderr)) if explain else (lambda *a: None)
spec = importlib.util.find_spec('torch')
if spec is None:
    sys.exit(f'gpu bundle: {sys.executable} has no torch (set FACET_BUNDLE_PYTHON to a python that has it)')
torch_dir = os.path.dirname(spec.origin)
version = importlib.metadata.version('torch')
public = lambda v: v.split('+')[0]  # 2.11.0+cu130 and 2.11.0 are the same release
if public(version) != public(manifest['torch']) and os.environ.get('FACET_BUNDLE_ANY_TORCH') != '1':
    sys.exit(f'gpu bundle: the executables were linked with torch {manifest["torch"]}, {sys.executable} has {version} '
             f'(LibTorch\'s C++ ABI changes between versions; FACET_BUNDLE_ANY_TORCH=1 tries anyway)')
libc = platform.libc_ver()[1] or os.confstr('CS_GNU_LIBC_VERSION').split()[-1]
need = manifest['glibc'].split('_')[1]
if [int(x) for x in libc.split('.')] < [int(x) for x in need.split('.')]:
    sys.exit(f'gpu bundle: this machine\'s glibc is {libc}; the bundle needs {need} (build it on an older system)')
# This machine's libstdc++: does it define every version the bundle asks for?
try:
    cache = subprocess.run(['ldconfig', '-p'], capture_output=True, text=True).stdout
except OSError:
    cache = ''
found = re.findall(r'libstdc\+\+\.so\.6 \(libc6,x86-64\) => (\S+)', cache)
found += [p for p in ('/usr/lib/x86_64-linux-gnu/libstdc++.so.6', '/usr/lib64/libstdc++.so.6', '/lib64/libstdc++.so.6') if os.path.exists(p)]
wanted = manifest['libstdc++'].split()
path = [os.path.join(bundle, 'lib')]
if found:
    data = open(found[0], 'rb').read()
    missing = [v for v in wanted if b'\0' + v.encode() + b'\0' not in data]
else:
    missing = ['(no libstdc++.so.6 found)']
if missing:
    path.append(os.path.join(bundle, 'lib-fallback'))
    note(f'the machine\'s libstdc++ ({found[0] if found else "none"}) lacks {missing[-1]}: using the bundle\'s')
else:
    note(f'libstdc++: the machine\'s ({found[0]})')
path += [os.path.join(torch_dir, 'lib')] + sorted(glob.glob(os.path.join(torch_dir, '..', 'nvidia', '*', 'lib')))
# The executables load libcudart.so.13 themselves: from the wheel's nvidia/cu13/lib, else the toolkit's.
if not any(os.path.exists(os.path.join(d, 'libcudart.so.13')) for d in path):
    path += [d for d in ('/usr/local/cuda/lib64', '/usr/local/cuda/lib') if os.path.exists(os.path.join(d, 'libcudart.so.13'))]
note(f'torch {version} at {torch_dir}; glibc {libc}')
print(':'.join(os.path.normpath(p) for p in path))
PY

for e in "${exes[@]}"; do
  name=$(basename "$e")
  cat > "$bundle/bin/$name" <<SH
#!/bin/sh
# The bundled $name (tools/gpu_bundle.sh) with the bundle's libraries and this machine's torch wheel.
bundle=\$(cd "\$(dirname "\$0")/.." && pwd)
if [ -z "\${FACET_BUNDLE_LD_PATH:-}" ]; then
  FACET_BUNDLE_LD_PATH=\$("\${FACET_BUNDLE_PYTHON:-python3}" "\$bundle/ld_path.py") || exit 127
  export FACET_BUNDLE_LD_PATH
fi
LD_LIBRARY_PATH=\$FACET_BUNDLE_LD_PATH\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH} exec "\$bundle/exe/$name" "\$@"
SH
  chmod +x "$bundle/bin/$name"
done

cat > "$bundle/run_gpu_check.sh" <<'SH'
#!/usr/bin/env bash
# Runs tools/gpu_check.sh with this bundle's executables (tools/gpu_bundle.sh made it), from the
# repository root: the current directory when it holds tools/gpu_check.sh, else --repo DIR, else the
# folder two above this bundle. Every other option goes to gpu_check.sh (--only STAGE[,STAGE...],
# --rounds N, --python PY, --dry-run). Results go to $OUT/gpu_check when OUT is set (the GPU
# machine's folder of files that come back), else to build/gpu_check; FACET_GPU_CHECK_RESULTS=DIR
# overrides both. FACET_BUNDLE_PYTHON picks the python whose torch wheel is used (default python3).
set -euo pipefail
bundle=$(cd "$(dirname "$0")" && pwd)
repo=
if [ "${1:-}" = --repo ]; then repo=$2; shift 2; fi
if [ -z "$repo" ]; then
  if [ -f tools/gpu_check.sh ]; then repo=$PWD; else repo=$(cd "$bundle/../.." && pwd); fi
fi
cd "$repo"
[ -f tools/gpu_check.sh ] || { echo "run_gpu_check.sh: $repo holds no tools/gpu_check.sh (use --repo DIR)" >&2; exit 2; }
sed -n '1,/^torch:/p' "$bundle/MANIFEST"
FACET_BUNDLE_LD_PATH=$("${FACET_BUNDLE_PYTHON:-python3}" "$bundle/ld_path.py" --explain) || exit 2
export FACET_BUNDLE_LD_PATH
# Every library must resolve (ldd loads nothing's code: a missing one is named here, not mid-check).
for exe in "$bundle"/exe/*; do
  if missing=$(LD_LIBRARY_PATH=$FACET_BUNDLE_LD_PATH ldd "$exe" | grep 'not found'); then
    echo "run_gpu_check.sh: $(basename "$exe") cannot load:" >&2
    echo "$missing" >&2
    exit 2
  fi
done
# The tests read the repository where it was built (experiments/, tests/fixtures): make that path
# lead here when it does not exist on this machine.
source_dir=$(sed -n 's/^source_dir: //p' "$bundle/MANIFEST")
if [ "$(realpath -m "$source_dir")" != "$(realpath "$repo")" ]; then
  if [ ! -e "$source_dir" ]; then
    mkdir -p "$(dirname "$source_dir")" && ln -s "$repo" "$source_dir"
    echo "gpu bundle: linked $source_dir (where the tests look for the repository) to $repo"
  else
    echo "gpu bundle: warning: the tests read $source_dir (where they were built), which is not $repo" >&2
  fi
fi
results=${FACET_GPU_CHECK_RESULTS:-${OUT:+$OUT/gpu_check}}
exec tools/gpu_check.sh --bin-dir "$bundle/bin" ${results:+--out "$results"} "$@"
SH
chmod +x "$bundle/run_gpu_check.sh"

# --- check it here: libraries resolve inside the bundle or the wheel, every symbol binds -------------
ld_path=$(FACET_BUNDLE_PYTHON=$venv_python "$venv_python" "$bundle/ld_path.py")
bad=0
for exe in "$bundle"/exe/*; do
  while read -r line; do
    case $line in
      *"=> $bundle/"*|*/site-packages/torch/lib/*|*/site-packages/nvidia/*) ;;
      *"not found"*) echo "gpu_bundle.sh: $(basename "$exe"): $line" >&2; bad=1 ;;
      *" => "*)
        lib=${line%% *}
        case $lib in
          linux-vdso*|ld-linux*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libutil.so*|libresolv.so*|libstdc++.so*|libgcc_s.so*) ;;
          *) echo "gpu_bundle.sh: $(basename "$exe"): $line (outside the bundle)" >&2; bad=1 ;;
        esac ;;
    esac
  done < <(LD_LIBRARY_PATH=$ld_path ldd "$exe")
done
if ! out=$(FACET_BUNDLE_PYTHON=$venv_python LD_BIND_NOW=1 "$bundle/bin/facet" --help 2>&1); then
  echo "gpu_bundle.sh: the bundled facet does not start with every symbol bound:" >&2
  echo "$out" | tail -5 >&2
  bad=1
fi
((bad == 0)) || { echo "gpu_bundle.sh: the bundle is incomplete (above)" >&2; exit 1; }
echo "  checked: every library resolves in the bundle, the torch wheel or glibc/libstdc++; facet starts with LD_BIND_NOW=1"

# --- the archive --------------------------------------------------------------------------------------
raw=$(du -sb "$bundle" | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
if ((archive)); then
  tarball=$bundle.tar.xz
  tar -C "$(dirname "$bundle")" -cf - "$(basename "$bundle")" | xz -9 -T1 > "$tarball"
  packed=$(stat -c %s "$tarball")
  mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
  echo "gpu_bundle.sh: $tarball: $(mib "$packed") ($(mib "$raw") unpacked); the working tree: $(mib "$tree"); together $(mib $((packed + tree))) of the 64 MiB that travel"
  if ((packed + tree > 60 * 1048576)); then
    echo "gpu_bundle.sh: warning: that leaves less than 4 MiB of the 64 MiB a call may carry" >&2
  fi
else
  echo "gpu_bundle.sh: $bundle: $raw bytes unpacked (no archive: --no-archive)"
fi
