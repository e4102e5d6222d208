#!/bin/bash
# Pins every container image of the manifests by digest: `image: NAME:TAG` becomes
# `image: NAME:TAG@sha256:...`, the digest read from the registry with skopeo (Debian:
# apt-get install skopeo). Run it where the registry is reachable, before kubectl apply:
#   serving/deploy/kubernetes/pin-images.sh                 # every *.yaml beside it
#   serving/deploy/kubernetes/pin-images.sh --check         # exit 1 naming any image
#                                                           # without a digest
# Options: --check (change nothing; fail on an unpinned image), --transport PREFIX
# (skopeo's, default docker://; e.g. containers-storage: for local images); other
# arguments are the files (default: every *.yaml in this folder).
# All digests are resolved before any file is written: an image that cannot be resolved
# (not found, no access, no network) stops it with status 1, naming the image and the
# file, and leaves every file as it was. An image already pinned is kept as it is.
set -euo pipefail

check=0
transport=docker://
files=()
while [ $# -gt 0 ]; do
    case "$1" in
        --check) check=1 ;;
        --transport) transport=${2:?--transport needs a prefix, e.g. docker://}; shift ;;
        --transport=*) transport=${1#--transport=} ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "pin-images.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) files+=("$1") ;;
    esac
    shift
done
if [ ${#files[@]} -eq 0 ]; then
    files=("$(dirname "$0")"/*.yaml)
fi

# `image:` lines (a list item or not, quoted or not, a comment after it kept).
q="[\"']"
image_line="^([[:space:]]*(-[[:space:]]+)?image:[[:space:]]*)$q?([^\"'[:space:]#]+)$q?(.*)\$"
pinned='@sha256:[0-9a-f]{64}$'

images() {  # FILE -> "LINE IMAGE" for each image line
    local number=0 line
    while IFS= read -r line || [ -n "$line" ]; do
        number=$((number + 1))
        if [[ $line =~ $image_line ]]; then
            echo "$number ${BASH_REMATCH[3]}"
        fi
    done < "$1"
}

if [ "$check" = 1 ]; then
    unpinned=0
    for file in "${files[@]}"; do
        while read -r number image; do
            if ! [[ $image =~ $pinned ]]; then
                echo "$file:$number: $image is not pinned by digest (run pin-images.sh)" >&2
                unpinned=1
            fi
        done < <(images "$file")
    done
    exit "$unpinned"
fi

command -v skopeo > /dev/null || {
    echo "pin-images.sh: skopeo not found (Debian/Ubuntu: apt-get install skopeo)" >&2
    exit 2
}
declare -A digest=()
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
for file in "${files[@]}"; do
    while read -r number image; do
        if [[ $image =~ $pinned ]] || [ -n "${digest[$image]:-}" ]; then
            continue
        fi
        if ! resolved=$(skopeo inspect --format '{{.Digest}}' "$transport$image" \
                        2> "$errors") || ! [[ @$resolved =~ $pinned ]]; then
            echo "pin-images.sh: cannot resolve the digest of $image ($file:$number)" \
                 "through $transport: $(grep -v 'level=info' "$errors") $resolved" >&2
            echo "pin-images.sh: no file changed" >&2
            exit 1
        fi
        digest[$image]=$resolved
    done < <(images "$file")
done
exec 3>&1   # what was pinned, while stdout writes the new file
for file in "${files[@]}"; do
    out=$(mktemp "$file.XXXXXX")
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ $line =~ $image_line ]] && [ -n "${digest[${BASH_REMATCH[3]}]:-}" ]; then
            image=${BASH_REMATCH[3]}
            line="${BASH_REMATCH[1]}$image@${digest[$image]}${BASH_REMATCH[4]}"
            echo "$file: $image@${digest[$image]}" >&3
        fi
        printf '%s\n' "$line"
    done < "$file" > "$out"
    chmod --reference="$file" "$out"
    mv "$out" "$file"
done
