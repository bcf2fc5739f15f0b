#!/usr/bin/env bash
# nic.sh: spread a NIC's queue interrupts over the CPUs ringgate's workers run
# on, and set RPS and XPS to match, saving every value it replaces so
# tuning/revert.sh can restore them. Changes last until reboot or until the
# driver resets the queues.
set -euo pipefail

RG_PROG=${0##*/}
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() {
    cat <<EOF
Usage: $RG_PROG [--dry-run] [--cpus LIST] [--state FILE] IFACE

Point IFACE's queue interrupts at ringgate's worker CPUs, one queue per CPU
in turn (queue q to the q-th CPU of LIST, wrapping), so each packet is
processed on a CPU that runs a worker. Then:
  RPS  with fewer RX queues than CPUs, every RX queue may hand packets to any
       worker CPU (rps_cpus = LIST); with enough queues RPS is turned off,
       the NIC's own hashing already spreads them;
  XPS  each worker CPU sends on its own TX queue (CPU i of LIST on queue
       i mod TX queues), so workers do not contend for queue locks.
The values replaced are saved first; tuning/revert.sh restores them.

Options:
  --cpus LIST    the worker CPUs, e.g. 0-7 or 2,4-6 (default: all online).
                 Give ringgate the same set (CPUAffinity= in ringgate.service).
  --dry-run      print what would change and change nothing (no root needed)
  --state FILE   where to save the old values
                 (default: $RG_STATE_DIR/nic-IFACE.state)
  -h, --help     this text

irqbalance, if running, moves the interrupts back: stop it, or ban the
worker CPUs from it (IRQBALANCE_BANNED_CPULIST). Interrupts the driver
manages itself cannot be moved and are left as they are.

Exit status: 0 when done (or nothing to do), 1 when a write failed, 2 on a
usage error.
EOF
}

dry_run=0
cpus_arg=
state=
iface=
while (($# > 0)); do
    case $1 in
    --dry-run) dry_run=1 ;;
    --cpus | --state)
        (($# >= 2)) || rg_usage_error "$1 needs a value"
        if [[ $1 == --cpus ]]; then cpus_arg=$2; else state=$2; fi
        shift
        ;;
    --cpus=*) cpus_arg=${1#*=} ;;
    --state=*) state=${1#*=} ;;
    -h | --help)
        usage
        exit 0
        ;;
    -*) rg_usage_error "unknown option: $1" ;;
    *)
        [[ -z $iface ]] || rg_usage_error "one interface at a time (got $iface and $1)"
        iface=$1
        ;;
    esac
    shift
done

[[ -n $iface ]] || rg_usage_error "which interface? e.g. $RG_PROG eth0"
[[ $iface =~ ^[A-Za-z0-9_.:@-]+$ ]] || rg_usage_error "not an interface name: $iface"
[[ -e /sys/class/net/$iface ]] || rg_die "no interface $iface here (see: ip link)"
[[ -n $state ]] || state=$RG_STATE_DIR/nic-$iface.state
if [[ -n $cpus_arg ]]; then
    cpus=$(rg_cpus_expand "$cpus_arg") || rg_usage_error "--cpus: not a CPU list: $cpus_arg"
else
    cpus=$(rg_online_cpus)
fi
read -r -a cpu <<<"$cpus"
n=${#cpu[@]}
online=" $(rg_online_cpus) "
for c in "${cpu[@]}"; do
    [[ $online == *" $c "* ]] || rg_die "CPU $c is not online (online: $(rg_norm "$online"))"
done

plan_paths=()
declare -A plan_new=() plan_old=() plan_what=()

# plan PATH NEW CURRENT WHAT SAME: queue a write unless SAME says the current
# value already means NEW.
plan() {
    if [[ $5 == same ]]; then
        printf '  %-44s ok: %s\n' "$4" "$3"
        return 0
    fi
    printf '  %-44s %s -> %s\n' "$4" "$3" "$2"
    plan_paths+=("$1")
    plan_new[$1]=$2
    plan_old[$1]=$3
    plan_what[$1]=$4
}

echo "NIC $iface, worker CPUs: $cpus"

# Interrupts: queue q -> the (q mod n)-th worker CPU.
nirq=0
while read -r irq q name; do
    nirq=$((nirq + 1))
    path=/proc/irq/$irq/smp_affinity_list
    cur=$(rg_read "$path") || continue
    want=${cpu[q % n]}
    same=differs
    [[ $(rg_list_cpus "$cur") == "$want" ]] && same=same
    plan "$path" "$want" "$cur" "IRQ $irq ($name) CPUs" "$same"
done < <(rg_iface_irqs "$iface")
((nirq > 0)) || echo "  no queue interrupts (a virtual device): RPS/XPS only"

# RPS: needed only when the NIC has fewer RX queues than there are workers.
mapfile -t rxq < <(rg_queue_dirs "$iface" rx)
if ((${#rxq[@]} < n)); then rps=$(rg_cpumask "${cpu[@]}"); else rps=0; fi
for d in "${rxq[@]}"; do
    path=$d/rps_cpus
    cur=$(rg_read "$path") || continue
    same=differs
    rg_same_mask "$cur" "$rps" && same=same
    plan "$path" "$rps" "$cur" "${d##*/} rps_cpus" "$same"
done

# XPS: worker CPU i -> TX queue (i mod ntx).
mapfile -t txq < <(rg_queue_dirs "$iface" tx)
ntx=${#txq[@]}
if ((ntx > 1)); then
    for t in "${!txq[@]}"; do
        path=${txq[t]}/xps_cpus
        cur=$(rg_read "$path") || continue
        mine=()
        for i in "${!cpu[@]}"; do
            ((i % ntx == t)) && mine+=("${cpu[i]}")
        done
        xps=$(rg_cpumask "${mine[@]}")
        same=differs
        rg_same_mask "$cur" "$xps" && same=same
        plan "$path" "$xps" "$cur" "${txq[t]##*/} xps_cpus" "$same"
    done
fi

if rg_irqbalance_running && ((nirq > 0)); then
    rg_warn "irqbalance is running and will move these interrupts again: systemctl disable --now irqbalance, or set IRQBALANCE_BANNED_CPULIST=$(printf '%s' "$cpus" | tr ' ' ',') in /etc/default/irqbalance"
fi

if ((${#plan_paths[@]} == 0)); then
    echo "Nothing to change."
    exit 0
fi
if ((dry_run)); then
    printf 'Dry run: %d value(s) would change; nothing was changed.\n' "${#plan_paths[@]}"
    exit 0
fi

rg_need_root

rg_state_load "$state"
rg_state_same_netns "$state"
for path in "${plan_paths[@]}"; do
    rg_state_add "$path" "${plan_old[$path]}"
done
rg_state_write "$state" nic.sh

failed=0
managed=0
for path in "${plan_paths[@]}"; do
    if ! err=$(rg_write "$path" "${plan_new[$path]}"); then
        if [[ $path == /proc/irq/* && $err == *"Input/output error"* ]]; then
            printf '  %s: managed by the driver, left as is\n' "${plan_what[$path]}"
            managed=$((managed + 1))
        else
            rg_warn "${plan_what[$path]}: could not write ${plan_new[$path]}: $err"
            failed=$((failed + 1))
        fi
    fi
done

printf 'Changed %d value(s)' "$((${#plan_paths[@]} - failed - managed))"
((failed > 0)) && printf ', %d failed' "$failed"
printf '. The old values are in %s;\nundo with: sudo %s/revert.sh --state %s\n' "$state" "$here" "$state"
((failed == 0))
