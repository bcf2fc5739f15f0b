# shellcheck shell=bash
# lib.sh: helpers shared by ringgate's tuning scripts. Sourced, never run.
#
# It owns three things the scripts must agree on:
#   - how tuning/sysctl.conf is parsed and compared with the host (rg_conf_*,
#     rg_mode, rg_target): a value "fits" when apply.sh would leave it alone,
#     and apply.sh never lowers a limit the host already has higher;
#   - which keys are per network namespace (rg_scope);
#   - the state file that apply.sh and nic.sh write before changing anything
#     and revert.sh restores from (rg_state_*).
# The caller sets RG_PROG (its name, for messages) and `set -euo pipefail`.

# Where apply.sh and nic.sh keep the values they replaced.
# shellcheck disable=SC2034 # read by the scripts that source this file
RG_STATE_DIR=/var/lib/ringgate-tuning

# Only these trees are ever written, by any script, including revert.sh
# reading a state file: a state file cannot be used to write anywhere else.
RG_WRITABLE_RE='^/(proc/sys|proc/irq|sys/class/net)/[A-Za-z0-9_./:@+-]+$'

rg_warn() { printf '%s: %s\n' "$RG_PROG" "$*" >&2; }
rg_die() {
    rg_warn "$*"
    exit 1
}
rg_usage_error() {
    rg_warn "$*"
    printf "Try '%s --help'.\n" "$RG_PROG" >&2
    exit 2
}

rg_is_root() { [[ $EUID -eq 0 ]]; }

# rg_need_root: stop with a clear message unless running as root.
rg_need_root() {
    rg_is_root && return 0
    rg_die "changing these values needs root (they live in /proc/sys and /sys). Re-run with sudo, or add --dry-run to see what would change without changing anything."
}

# --- Values ------------------------------------------------------------------

# rg_read FILE: print FILE's content (callers capture it with $(...), which
# drops the trailing newline); fail silently when it is missing or unreadable.
rg_read() {
    [[ -r $1 ]] || return 1
    cat -- "$1" 2>/dev/null
}

# rg_norm VALUE: collapse runs of blanks and tabs to one space, trim the ends.
rg_norm() {
    local -a f
    read -r -a f <<<"$1" || true
    printf '%s' "${f[*]}"
}

rg_key_path() { printf '/proc/sys/%s' "${1//.//}"; }
rg_path_key() {
    local p=${1#/proc/sys/}
    printf '%s' "${p//\//.}"
}

# rg_write FILE VALUE: write VALUE; on failure print the kernel's reason
# (e.g. "Invalid argument") and fail.
rg_write() {
    local err
    if ! err=$({ printf '%s\n' "$2" >"$1"; } 2>&1); then
        err=${err##*: }
        printf '%s' "${err:-write failed}"
        return 1
    fi
}

rg_is_int() { [[ $1 =~ ^-?[0-9]+$ ]]; }

# rg_cmp A B: print -1, 0 or 1. Compares decimal integers of any length as
# strings, because fs.file-max can be 2^63-1 and bash arithmetic is 64-bit.
rg_cmp() {
    local a=$1 b=$2 sa=1 sb=1 r
    if [[ $a == -* ]]; then sa=-1 a=${a#-}; fi
    if [[ $b == -* ]]; then sb=-1 b=${b#-}; fi
    while [[ $a == 0?* ]]; do a=${a#0}; done
    while [[ $b == 0?* ]]; do b=${b#0}; done
    [[ $a == 0 ]] && sa=1
    [[ $b == 0 ]] && sb=1
    if ((sa != sb)); then
        printf '%s' "$sa"
        return
    fi
    if ((${#a} != ${#b})); then
        r=$((${#a} > ${#b} ? 1 : -1))
    elif [[ $a == "$b" ]]; then
        r=0
    elif [[ $a > $b ]]; then
        r=1
    else
        r=-1
    fi
    printf '%s' $((r * sa))
}

rg_ge() { [[ $(rg_cmp "$1" "$2") != -1 ]]; }

# rg_mode KEY: how KEY's current value is compared with the profile's.
#   min    every field at least the recommended one (limits, buffers)
#   max    every field at most the recommended one (kernel.io_uring_disabled)
#   range  "LO HI" covers the recommended range (ip_local_port_range)
#   exact  the recommended value and nothing else
# A value with a non-numeric field is always compared exactly.
rg_mode() {
    case $1 in
    net.ipv4.ip_local_port_range) printf range ;;
    kernel.io_uring_disabled) printf max ;;
    net.core.busy_read | net.core.busy_poll) printf exact ;;
    *) printf min ;;
    esac
}

# rg_target KEY CURRENT RECOMMENDED: the value apply.sh writes. It is the
# recommended value except that a field the host already has better is kept,
# so applying the profile never lowers a limit. CURRENT "fits" when the
# target equals it (rg_fits).
rg_target() {
    local key=$1 mode i a b
    local -a c r out
    mode=$(rg_mode "$key")
    read -r -a c <<<"$2" || true
    read -r -a r <<<"$3" || true
    for i in "${c[@]}" "${r[@]}"; do
        rg_is_int "$i" || mode=exact
    done
    if [[ $mode != exact && ${#c[@]} -ne ${#r[@]} ]]; then
        mode=exact
    fi
    case $mode in
    exact) out=("${r[@]}") ;;
    range)
        if ((${#r[@]} != 2)); then
            out=("${r[@]}")
        else
            a=${c[0]} b=${c[1]}
            [[ $(rg_cmp "${r[0]}" "$a") == -1 ]] && a=${r[0]}
            [[ $(rg_cmp "${r[1]}" "$b") == 1 ]] && b=${r[1]}
            out=("$a" "$b")
        fi
        ;;
    min | max)
        for i in "${!r[@]}"; do
            a=${c[i]}
            if [[ $mode == min && $(rg_cmp "${r[i]}" "$a") == 1 ]] ||
                [[ $mode == max && $(rg_cmp "${r[i]}" "$a") == -1 ]]; then
                a=${r[i]}
            fi
            out+=("$a")
        done
        ;;
    esac
    printf '%s' "${out[*]}"
}

rg_fits() { [[ $(rg_target "$1" "$2" "$3") == "$(rg_norm "$2")" ]]; }

# rg_scope KEY: "netns" when each network namespace has its own copy of KEY,
# "host" when one value serves the whole machine.
#
# Determined on Linux 6.18 by writing each key inside a fresh `ip netns`
# and reading the host's value back: net.ipv4.udp_{r,w}mem_min,
# ip_local_port_range, ip_local_reserved_ports, net.core.somaxconn and
# optmem_max are per namespace; net.core.{r,w}mem_{max,default} and
# net.netfilter.nf_conntrack_max are shown read-only in a child namespace;
# net.core.netdev_*, busy_*, rps_sock_flow_entries and net.ipv4.udp_mem do
# not exist there at all; fs.* and kernel.* are not namespaced by the network
# namespace. Unknown net.core keys are taken as host-wide (optmem_max became
# per namespace only recently), and apply.sh --only-netns additionally skips
# any key the namespace shows read-only or not at all.
rg_scope() {
    case $1 in
    net.ipv4.udp_mem | net.ipv4.tcp_mem) printf host ;;
    net.ipv4.* | net.ipv6.* | net.unix.* | net.core.somaxconn) printf netns ;;
    net.netfilter.nf_conntrack_*timeout*) printf netns ;;
    *) printf host ;;
    esac
}

# rg_netns: this process's network namespace, e.g. "net:[4026531840]".
rg_netns() { readlink /proc/self/ns/net 2>/dev/null || printf unknown; }

# rg_in_child_netns: true when this process is not in the host's network
# namespace (inside `ip netns exec` or a container with its own network).
# PID 1's or kthreadd's namespace is the host's when we may read it (PID 1 is
# often not readable: readlink fails silently). Failing that, the host's
# namespace is the only one with the per-CPU backlog sysctls.
rg_in_child_netns() {
    local here ref pid
    here=$(rg_netns)
    for pid in 1 2; do
        if ref=$(readlink "/proc/$pid/ns/net" 2>/dev/null) && [[ -n $ref && $ref != "$here" ]]; then
            return 0
        fi
    done
    [[ -d /proc/sys/net/core && ! -e /proc/sys/net/core/netdev_max_backlog ]]
}

# --- The profile -------------------------------------------------------------

# rg_conf_read FILE: fill RG_CONF_KEYS (in file order) and RG_CONF[KEY] from a
# sysctl.d file. Accepts "key = value", "key=value", a leading "-" (ignore a
# missing key, as systemd-sysctl does) and "/" as separator; "#" and ";" start
# comments. Stops at the first malformed line.
rg_conf_read() {
    local file=$1 line key value n=0
    RG_CONF_KEYS=()
    declare -gA RG_CONF=()
    [[ -r $file ]] || rg_die "cannot read the profile $file"
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        line=$(rg_norm "$line")
        [[ -z $line || $line == '#'* || $line == ';'* ]] && continue
        if [[ $line != *=* ]]; then
            rg_die "$file:$n: expected 'key = value', got: $line"
        fi
        key=$(rg_norm "${line%%=*}")
        value=$(rg_norm "${line#*=}")
        key=${key#-}
        key=${key//\//.}
        if [[ ! $key =~ ^[A-Za-z0-9_]+(\.[A-Za-z0-9_-]+)+$ ]]; then
            rg_die "$file:$n: not a sysctl key: $key"
        fi
        [[ -v RG_CONF[$key] ]] || RG_CONF_KEYS+=("$key")
        RG_CONF[$key]=$value
    done <"$file"
    ((${#RG_CONF_KEYS[@]} > 0)) || rg_die "$file has no settings"
}

# --- State ---------------------------------------------------------------------
#
# A state file holds the value each path had before ringgate's tuning first
# changed it: comment lines, then "PATH<TAB>VALUE" lines (VALUE verbatim, tabs
# included). It is merged, never overwritten: applying twice keeps the
# values from before the first time, so revert.sh always gets back to the
# untuned host. It records the network namespace it was written in, and
# revert.sh refuses to use it from any other (the same /proc/sys path means
# a different value there).

# rg_state_load FILE: fill RG_SAVED_PATHS (in saved order), RG_SAVED[PATH] and
# RG_STATE_NETNS. A missing file loads as empty.
rg_state_load() {
    local file=$1 line path n=0
    RG_SAVED_PATHS=()
    declare -gA RG_SAVED=()
    RG_STATE_NETNS=
    [[ -e $file ]] || return 0
    [[ -r $file ]] || rg_die "cannot read the state file $file"
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        if [[ $line == '# netns '* ]]; then
            RG_STATE_NETNS=${line#'# netns '}
            continue
        fi
        [[ -z $line || $line == '#'* ]] && continue
        [[ $line == *$'\t'* ]] || rg_die "$file:$n: not 'PATH<TAB>VALUE': $line"
        path=${line%%$'\t'*}
        [[ $path =~ $RG_WRITABLE_RE && $path != *..* ]] ||
            rg_die "$file:$n: refusing to touch $path (only /proc/sys, /proc/irq and /sys/class/net are tuned)"
        [[ -v RG_SAVED[$path] ]] || RG_SAVED_PATHS+=("$path")
        RG_SAVED[$path]=${line#*$'\t'}
    done <"$file"
}

# rg_state_same_netns FILE: stop unless FILE was written in this namespace.
rg_state_same_netns() {
    local here
    here=$(rg_netns)
    if [[ -n $RG_STATE_NETNS && $RG_STATE_NETNS != "$here" ]]; then
        rg_die "$1 was written in network namespace $RG_STATE_NETNS, this is $here. Run this inside that namespace (ip netns exec NAME ...)."
    fi
}

# rg_state_add PATH VALUE: remember PATH's original VALUE unless already saved.
rg_state_add() {
    [[ -v RG_SAVED[$1] ]] && return 0
    RG_SAVED_PATHS+=("$1")
    RG_SAVED[$1]=$2
}

# rg_state_write FILE WRITER: write RG_SAVED atomically (temporary file, then
# rename), creating the directory with mode 0700.
rg_state_write() {
    local file=$1 writer=$2 dir tmp path
    dir=$(dirname -- "$file")
    if [[ ! -d $dir ]]; then
        { mkdir -p -- "$dir" && chmod 0700 -- "$dir"; } || rg_die "cannot create $dir"
    fi
    tmp=$(mktemp "$file.XXXXXX") || rg_die "cannot write in $dir"
    {
        printf '# ringgate-tuning state: the values %s replaced. tuning/revert.sh restores them.\n' "$writer"
        printf '# written %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        printf '# netns %s\n' "$(rg_netns)"
        for path in "${RG_SAVED_PATHS[@]}"; do
            printf '%s\t%s\n' "$path" "${RG_SAVED[$path]}"
        done
    } >"$tmp" || {
        rm -f -- "$tmp"
        rg_die "cannot write $tmp"
    }
    mv -f -- "$tmp" "$file" || rg_die "cannot replace $file"
}

# --- CPUs ------------------------------------------------------------------

# rg_cpus_expand LIST: "0-3,8" -> "0 1 2 3 8" (sorted, unique); fails on a
# malformed list.
rg_cpus_expand() {
    local part a b i
    local -a parts out=()
    [[ $1 =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] || return 1
    IFS=, read -r -a parts <<<"$1"
    for part in "${parts[@]}"; do
        a=$((10#${part%-*})) b=$((10#${part#*-}))
        ((a <= b && b < 65536)) || return 1
        for ((i = a; i <= b; i++)); do out+=("$i"); done
    done
    printf '%s\n' "${out[@]}" | sort -n -u | paste -s -d ' ' -
}

rg_online_cpus() {
    local list
    list=$(rg_read /sys/devices/system/cpu/online) || list=0-$(($(nproc) - 1))
    rg_cpus_expand "$list"
}

# rg_cpumask CPU...: the kernel's hex bitmap format, 32-bit words separated
# by commas, most significant first ("3", "1,00000000"). No CPUs: "0".
rg_cpumask() {
    local c i top=0 out
    local -a words=()
    for c in "$@"; do
        i=$((c / 32))
        words[i]=$((${words[i]:-0} | (1 << (c % 32))))
        ((i > top)) && top=$i
    done
    out=$(printf '%x' "${words[top]:-0}")
    for ((i = top - 1; i >= 0; i--)); do
        out+=$(printf ',%08x' "${words[i]:-0}")
    done
    printf '%s' "$out"
}

# rg_mask_cpus MASK: "00000000,0000000c" -> "2 3".
rg_mask_cpus() {
    local m=${1//,/} i d bit base=0
    local -a out=()
    m=${m,,}
    [[ $m =~ ^[0-9a-f]*$ ]] || return 1
    for ((i = ${#m} - 1; i >= 0; i--)); do
        d=$((16#${m:i:1}))
        for bit in 0 1 2 3; do
            ((d & (1 << bit))) && out+=($((base + bit)))
        done
        base=$((base + 4))
    done
    printf '%s' "${out[*]}"
}

# rg_same_mask A B: true when two hex masks name the same CPUs.
rg_same_mask() { [[ $(rg_mask_cpus "$1") == "$(rg_mask_cpus "$2")" ]]; }

# rg_list_cpus LIST: "0-2,5" -> "0 1 2 5" (for an affinity list read back).
rg_list_cpus() { rg_cpus_expand "$1" 2>/dev/null || printf '%s' "$1"; }

# rg_cpus_subset "A..." "B...": true when every CPU of A is in B.
rg_cpus_subset() {
    local c
    for c in $1; do
        [[ " $2 " == *" $c "* ]] || return 1
    done
}

# --- NICs --------------------------------------------------------------------

# rg_iface_irqs IFACE: print "IRQ QUEUE NAME" for each of the NIC's queue
# interrupts, in IRQ order. QUEUE is the queue number in the IRQ's name
# (eth0-TxRx-3, virtio2-input.3, mlx5_comp3@pci:...), or the position among
# the queue IRQs when the name has none. Configuration, control and async
# IRQs are left out unless no IRQ looks like a queue. Virtual devices (veth,
# bridges, lo) print nothing.
rg_iface_irqs() {
    local iface=$1 dev dir f irq name q k=0
    local -a irqs=() picked=()
    declare -A names=()
    dev=$(readlink -f "/sys/class/net/$iface/device" 2>/dev/null) || return 0
    [[ -d $dev ]] || return 0
    dir=$dev
    # A virtio NIC is a child of the PCI function that owns its MSI-X vectors.
    if [[ ! -d $dir/msi_irqs && ${dev##*/} == virtio* ]]; then dir=${dev%/*}; fi
    if [[ -d $dir/msi_irqs ]]; then
        for f in "$dir"/msi_irqs/*; do
            [[ -e $f ]] && irqs+=("${f##*/}")
        done
    elif irq=$(rg_read "$dev/irq") && [[ $irq =~ ^[1-9][0-9]*$ ]]; then
        irqs+=("$irq")
    fi
    ((${#irqs[@]} > 0)) || return 0
    mapfile -t irqs < <(printf '%s\n' "${irqs[@]}" | sort -n)
    while read -r irq name; do
        names[$irq]=$name
    done < <(awk '$1 ~ /^[0-9]+:$/ { sub(":", "", $1); print $1, $NF }' /proc/interrupts 2>/dev/null)
    for irq in "${irqs[@]}"; do
        name=${names[$irq]:-}
        [[ ${name,,} =~ (input|output|txrx|rx|tx|comp|queue|fp)[^0-9]*[0-9]+ ]] && picked+=("$irq")
    done
    ((${#picked[@]} > 0)) || picked=("${irqs[@]}")
    for irq in "${picked[@]}"; do
        name=${names[$irq]:-irq$irq}
        if [[ ${name,,} =~ (input|output|txrx|rx|tx|comp|queue|fp)[^0-9]*([0-9]+) ]]; then
            q=$((10#${BASH_REMATCH[2]}))
        else
            q=$k
        fi
        k=$((k + 1))
        printf '%s %s %s\n' "$irq" "$q" "$name"
    done
}

# rg_queue_dirs IFACE rx|tx: print the NIC's queue directories in queue order.
rg_queue_dirs() {
    local d
    for d in "/sys/class/net/$1/queues/$2"-*; do
        [[ -d $d ]] && printf '%s\n' "$d"
    done | sort -V
}

# rg_irqbalance_running: true when irqbalance is running (it moves IRQs back).
rg_irqbalance_running() { pgrep -x irqbalance >/dev/null 2>&1; }
