#!/usr/bin/env bash
# revert.sh: put back the values tuning/apply.sh and tuning/nic.sh saved
# before they changed anything, check that each reads back exactly as saved,
# and delete the state file once everything is restored.
set -euo pipefail

RG_PROG=${0##*/}
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
    cat <<EOF
Usage: $RG_PROG [--dry-run] [--state FILE]...

Restore the values that apply.sh (sysctls) and nic.sh (IRQ affinity, RPS,
XPS) replaced, from their state files, most recent change first. Each value
is read back and must match what was saved; a state file is deleted only
when all of its values are back.

Options:
  --dry-run      print what would be restored and change nothing
  --state FILE   restore from FILE (repeatable). Default: every *.state file
                 in $RG_STATE_DIR
  -h, --help     this text

Needs root unless --dry-run or nothing needs restoring. A state file written
inside a network namespace can only be restored from inside it.

Exit status: 0 when everything is restored (or nothing was saved), 1 when a
value could not be restored (its state file is kept), 2 on a usage error.
EOF
}

dry_run=0
states=()
while (($# > 0)); do
    case $1 in
    --dry-run) dry_run=1 ;;
    --state)
        (($# >= 2)) || rg_usage_error "--state needs a value"
        states+=("$2")
        shift
        ;;
    --state=*) states+=("${1#*=}") ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) rg_usage_error "unknown argument: $1" ;;
    esac
    shift
done

if ((${#states[@]} == 0)); then
    for f in "$RG_STATE_DIR"/*.state; do
        [[ -e $f ]] && states+=("$f")
    done
    if ((${#states[@]} == 0)); then
        echo "Nothing to revert: no state files in $RG_STATE_DIR."
        exit 0
    fi
fi

# revert_one FILE: restore FILE's values; returns 1 when any is not back.
revert_one() {
    local file=$1 i path saved cur err now failed=0
    local -a todo=()
    if [[ ! -e $file ]]; then
        echo "Nothing to revert: $file does not exist."
        return 0
    fi
    rg_state_load "$file"
    rg_state_same_netns "$file"
    echo "From $file:"
    # Most recent first: a later change may depend on an earlier one.
    for ((i = ${#RG_SAVED_PATHS[@]} - 1; i >= 0; i--)); do
        path=${RG_SAVED_PATHS[i]}
        saved=${RG_SAVED[$path]}
        if ! cur=$(rg_read "$path"); then
            printf '  %-44s gone (device removed?), skipped\n' "$(show "$path")"
            continue
        fi
        if [[ $cur == "$saved" ]]; then
            printf '  %-44s already %s\n' "$(show "$path")" "$(rg_norm "$saved")"
            continue
        fi
        printf '  %-44s %s -> %s\n' "$(show "$path")" "$(rg_norm "$cur")" "$(rg_norm "$saved")"
        todo+=("$path")
    done
    if ((dry_run)); then
        printf 'Dry run: %d value(s) would be restored; nothing was changed.\n' "${#todo[@]}"
        return 0
    fi
    if ((${#todo[@]} > 0)); then
        rg_need_root
    fi
    for path in "${todo[@]}"; do
        saved=${RG_SAVED[$path]}
        if ! err=$(rg_write "$path" "$saved"); then
            rg_warn "$(show "$path"): could not write $(rg_norm "$saved"): $err"
            failed=$((failed + 1))
            continue
        fi
        now=$(rg_read "$path" || true)
        if [[ $now != "$saved" && $(rg_norm "$now") != "$(rg_norm "$saved")" ]]; then
            rg_warn "$(show "$path"): wrote $(rg_norm "$saved") but it reads back as $(rg_norm "$now")"
            failed=$((failed + 1))
        fi
    done
    if ((failed > 0)); then
        rg_warn "$failed value(s) not restored; keeping $file"
        return 1
    fi
    rm -f -- "$file"
    printf 'Restored %d value(s); removed %s.\n' "${#todo[@]}" "$file"
}

# show PATH: a sysctl path as its key, anything else as is.
show() {
    if [[ $1 == /proc/sys/* ]]; then rg_path_key "$1"; else printf '%s' "$1"; fi
}

status=0
for f in "${states[@]}"; do
    revert_one "$f" || status=1
done
exit "$status"
