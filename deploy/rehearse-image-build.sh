#!/usr/bin/env bash
# Rehearses deploy/Dockerfile's builder stage without Docker: parses the
# stage's instructions and executes them in order (RUN lines verbatim, with
# /bin/sh -ec as Docker does) in a temporary copy of the build context, so the
# image recipe cannot drift from what CI exercises.
#
#   deploy/rehearse-image-build.sh           # full rehearsal (release build)
#   deploy/rehearse-image-build.sh --print   # only show what would run
#   deploy/rehearse-image-build.sh --from-git-head
#       build context = the committed tree (git archive HEAD) instead of the
#       working tree; what a clean clone (CI) builds, unaffected by
#       uncommitted work of others in a shared checkout
#
# Mapping: WORKDIR -> a temp dir; `COPY . .` -> a copy of the repository
# minus deploy/Dockerfile.dockerignore's patterns; ARG -> exported with the
# Dockerfile default unless already set in the environment (OUT_DIR is set to a
# temp dir here). The toolchain steps are guarded in the Dockerfile, so an
# installed nightly, rust-src and bpf-linker are reused as they are.
# CARGO_TARGET_DIR defaults to target/image-rehearsal so reruns are incremental;
# set it to an empty dir for a from-scratch build.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DOCKERFILE="$ROOT/deploy/Dockerfile"
IGNORE="$ROOT/deploy/Dockerfile.dockerignore"
PRINT=0
FROM_HEAD=0
for arg in "$@"; do
    case "$arg" in
        --print) PRINT=1 ;;
        --from-git-head) FROM_HEAD=1 ;;
        *) echo "usage: $0 [--print] [--from-git-head]" >&2; exit 2 ;;
    esac
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kiln-image-rehearsal.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
export OUT_DIR="${OUT_DIR:-$WORK/out}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/image-rehearsal}"

# The builder stage's instructions, one per line, continuations joined.
mapfile -t INSTRUCTIONS < <(python3 - "$DOCKERFILE" <<'PY'
import re, sys
lines, cur = [], ""
for raw in open(sys.argv[1]):
    line = raw.rstrip("\n")
    if not cur and (line.strip().startswith("#") or not line.strip()):
        continue
    if line.endswith("\\"):
        cur += line[:-1] + " "
        continue
    lines.append(cur + line)
    cur = ""
stage = None
for l in lines:
    m = re.match(r"\s*FROM\s+\S+(?:\s+AS\s+(\S+))?", l, re.I)
    if m:
        stage = (m.group(1) or "").lower()
        continue
    if stage == "builder":
        print(l.strip())
PY
)
[ "${#INSTRUCTIONS[@]}" -gt 0 ] || { echo "error: no builder stage in $DOCKERFILE" >&2; exit 1; }

copy_context() {
    local dest="$1" excludes=()
    if [ "$FROM_HEAD" = 1 ]; then
        git -C "$ROOT" archive --format=tar HEAD | tar -C "$dest" -xf -
        return
    fi
    while IFS= read -r pat; do
        pat="${pat%%#*}"; pat="$(echo "$pat" | xargs)"
        [ -n "$pat" ] || continue
        excludes+=("--exclude=${pat#\*\*/}")
    done <"$IGNORE"
    tar -C "$ROOT" "${excludes[@]}" -cf - . | tar -C "$dest" -xf -
}

CWD="$WORK"
ran=0
for ins in "${INSTRUCTIONS[@]}"; do
    keyword="${ins%% *}"; args="${ins#* }"
    case "${keyword^^}" in
        ARG)
            name="${args%%=*}"
            if [[ "$args" == *=* ]]; then default="${args#*=}"; else default=""; fi
            if [ -z "${!name+x}" ]; then export "$name=$default"; fi
            echo "ARG $name=${!name}" >&2 ;;
        ENV)
            eval "export $args"
            echo "ENV $args" >&2 ;;
        WORKDIR)
            CWD="$WORK/src"; mkdir -p "$CWD"
            echo "WORKDIR $args -> $CWD" >&2 ;;
        COPY)
            [ "$args" = ". ." ] || { echo "error: rehearsal supports only 'COPY . .', got: $ins" >&2; exit 1; }
            echo "COPY . . -> $CWD" >&2
            [ "$PRINT" = 1 ] || copy_context "$CWD" ;;
        RUN)
            echo "RUN $args" >&2
            if [ "$PRINT" = 0 ]; then
                (cd "$CWD" && /bin/sh -ec "$args")
            fi
            ran=$((ran + 1)) ;;
        LABEL) ;;
        *)
            echo "error: the rehearsal does not know '$keyword' (builder stage); teach it, or the image and CI drift" >&2
            exit 1 ;;
    esac
done
if [ "$PRINT" = 0 ]; then
    [ -x "$OUT_DIR/kiln" ] || { echo "error: the builder stage left no $OUT_DIR/kiln" >&2; exit 1; }
    "$OUT_DIR/kiln" --version
fi
echo "rehearsed $ran RUN instructions of the builder stage" >&2
