#!/usr/bin/env bash
# apply.sh: apply ringgate's sysctl profile (tuning/sysctl.conf) to the running
# kernel, saving every value it replaces first so tuning/revert.sh can put the
# host back exactly as it was. Never lowers a limit the host already has
# higher. Changes last until reboot; see --help for making them permanent.
set -euo pipefail

RG_PROG=${0##*/}
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
    cat <<EOF
Usage: $RG_PROG [--dry-run] [--conf FILE] [--state FILE] [--only-netns]

Apply ringgate's sysctl profile to the running kernel. Each value is raised
to the profile's (ip_local_port_range is widened to cover it); a value the
host already has higher is left alone. Before writing anything, the old
values are saved to the state file, and tuning/revert.sh restores them.
Applying again keeps the values saved the first time.

Options:
  --dry-run      print what would change and change nothing (no root needed)
  --conf FILE    the profile to apply (default: $here/sysctl.conf)
  --state FILE   where to save the old values
                 (default: $RG_STATE_DIR/sysctl.state)
  --only-netns   apply only the keys each network namespace has its own copy
                 of (net.ipv4.udp_rmem_min, ip_local_port_range, ...), leaving
                 host-wide ones (fs.*, kernel.*, net.core.rmem_max, ...)
                 alone. Use it inside 'ip netns exec' or a container.
  -h, --help     this text

Needs root unless --dry-run or nothing needs changing.

The changes last until reboot. To keep them, install the profile as a
sysctl.d drop-in (check first that it lowers nothing: sysctl.d applies it
verbatim at boot):
  sudo install -m 0644 $here/sysctl.conf /etc/sysctl.d/90-ringgate.conf

Exit status: 0 when every selected key fits the profile afterwards (or would,
with --dry-run), 1 when a write failed, 2 on a usage error.
EOF
}

dry_run=0
only_netns=0
conf=$here/sysctl.conf
state=$RG_STATE_DIR/sysctl.state
while (($# > 0)); do
    case $1 in
    --dry-run) dry_run=1 ;;
    --only-netns) only_netns=1 ;;
    --conf | --state)
        (($# >= 2)) || rg_usage_error "$1 needs a value"
        if [[ $1 == --conf ]]; then conf=$2; else state=$2; fi
        shift
        ;;
    --conf=*) conf=${1#*=} ;;
    --state=*) state=${1#*=} ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) rg_usage_error "unknown argument: $1" ;;
    esac
    shift
done

rg_conf_read "$conf"

child_netns=0
if rg_in_child_netns; then child_netns=1; fi
if ((child_netns && !only_netns && !dry_run)); then
    rg_die "this shell is in a network namespace other than the host's ($(rg_netns)). fs.*, kernel.* and most net.core.* keys are host-wide: writing them here would change the whole machine. Use --only-netns to apply only this namespace's keys, or run from the host."
fi

if ((only_netns)); then
    printf 'Profile %s (per-namespace keys only)\n' "$conf"
else
    printf 'Profile %s\n' "$conf"
fi

plan_keys=()
declare -A plan_new=() plan_old=()
skipped=0
for key in "${RG_CONF_KEYS[@]}"; do
    rec=${RG_CONF[$key]}
    path=$(rg_key_path "$key")
    if ((only_netns)) && [[ $(rg_scope "$key") != netns ]]; then
        printf '  %-34s skipped: host-wide\n' "$key"
        skipped=$((skipped + 1))
        continue
    fi
    if ! cur=$(rg_read "$path"); then
        printf '  %-34s skipped: not on this kernel\n' "$key"
        skipped=$((skipped + 1))
        continue
    fi
    if ((only_netns && child_netns)) && rg_is_root && [[ ! -w $path ]]; then
        printf '  %-34s skipped: read-only in this namespace (host-wide)\n' "$key"
        skipped=$((skipped + 1))
        continue
    fi
    new=$(rg_target "$key" "$cur" "$rec")
    if [[ $new == "$(rg_norm "$cur")" ]]; then
        printf '  %-34s ok: %s\n' "$key" "$(rg_norm "$cur")"
        continue
    fi
    printf '  %-34s %s -> %s\n' "$key" "$(rg_norm "$cur")" "$new"
    plan_keys+=("$key")
    plan_old[$key]=$cur
    plan_new[$key]=$new
done

if ((${#plan_keys[@]} == 0)); then
    echo "Nothing to change."
    exit 0
fi
if ((dry_run)); then
    printf 'Dry run: %d value(s) would change; nothing was changed.\n' "${#plan_keys[@]}"
    if ((child_netns && !only_netns)); then
        echo "Note: this is not the host's network namespace; a real run needs --only-netns here."
    fi
    exit 0
fi

rg_need_root

# Save first: if a write below fails, or this script is killed, revert.sh
# still knows the original of every key it may have touched.
rg_state_load "$state"
rg_state_same_netns "$state"
for key in "${plan_keys[@]}"; do
    rg_state_add "$(rg_key_path "$key")" "${plan_old[$key]}"
done
rg_state_write "$state" apply.sh

failed=0
for key in "${plan_keys[@]}"; do
    path=$(rg_key_path "$key")
    if ! err=$(rg_write "$path" "${plan_new[$key]}"); then
        rg_warn "$key: could not write ${plan_new[$key]}: $err"
        failed=$((failed + 1))
        continue
    fi
    now=$(rg_read "$path" || true)
    if [[ $(rg_norm "$now") != "${plan_new[$key]}" ]]; then
        rg_warn "$key: wrote ${plan_new[$key]} but the kernel reports $(rg_norm "$now")"
        failed=$((failed + 1))
    fi
done

changed=$((${#plan_keys[@]} - failed))
printf 'Changed %d value(s)' "$changed"
((failed > 0)) && printf ', %d failed' "$failed"
printf '. The old values are in %s;\nundo with: sudo %s/revert.sh --state %s\n' "$state" "$here" "$state"
echo "These changes last until reboot (see --help to make them permanent)."
((failed == 0))
