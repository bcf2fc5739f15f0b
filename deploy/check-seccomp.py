#!/usr/bin/env python3
"""Check deploy/seccomp.json: Docker's default profile plus io_uring, nothing else.

Two checks, no network:
1. io_uring_setup, io_uring_enter and io_uring_register are allowed unconditionally: named in an
   SCMP_ACT_ALLOW rule with no argument filter and no includes/excludes, and in no other rule.
2. With those three names taken out, the profile equals the upstream one it derives from
   (deploy/README.md names the version): compared as parsed JSON against the SHA-256 pinned
   below, or, with --upstream FILE, against that file itself, with the differing rules printed.

Usage: deploy/check-seccomp.py [--upstream default.json] [PROFILE]
Exit status 0 when both hold, 1 otherwise.
"""

import argparse
import copy
import hashlib
import json
import pathlib
import sys

IO_URING = ("io_uring_enter", "io_uring_register", "io_uring_setup")

# moby/profiles seccomp/v0.2.3, seccomp/default.json (git blob ea5a494afb8d), as vendored by
# Docker Engine v29.7.2: SHA-256 of canonical() of it. Update together with deploy/README.md.
UPSTREAM = "moby/profiles seccomp/v0.2.3"
UPSTREAM_CANONICAL_SHA256 = "9da637d2ab0a204fcbd91bd88f1be9e004a3acab61c571a9f5b8870e588a17d2"

HERE = pathlib.Path(__file__).resolve().parent


def canonical(profile):
    """One byte string per meaning: key order and whitespace do not count, list order does."""
    return json.dumps(profile, sort_keys=True, separators=(",", ":")).encode()


def unconditional_allow(rule):
    return rule.get("action") == "SCMP_ACT_ALLOW" and not any(
        rule.get(k) for k in ("args", "includes", "excludes")
    )


def but_names(rule):
    return {k: v for k, v in rule.items() if k != "names"}


def without_io_uring(profile):
    """The profile with the three names removed (and a rule left empty by that, dropped)."""
    out = copy.deepcopy(profile)
    rules = []
    for rule in out.get("syscalls", []):
        names = [n for n in rule.get("names", []) if n not in IO_URING]
        if names or not rule.get("names"):
            rule["names"] = names
            rules.append(rule)
    out["syscalls"] = rules
    return out


def check(profile_path, upstream_path):
    errors = []
    profile = json.loads(profile_path.read_text())

    for name in IO_URING:
        rules = [r for r in profile.get("syscalls", []) if name in r.get("names", [])]
        if not any(unconditional_allow(r) for r in rules):
            errors.append(f"{name} is not in an unconditional SCMP_ACT_ALLOW rule")
        others = [r for r in rules if not unconditional_allow(r)]
        if others:
            errors.append(f"{name} is also named in a conditional or non-allow rule: {others}")

    stripped = without_io_uring(profile)
    if upstream_path:
        upstream = json.loads(upstream_path.read_text())
        if stripped != upstream:
            errors.append(f"{profile_path} less io_uring differs from {upstream_path}")
            for key in sorted(set(stripped) | set(upstream)):
                if key != "syscalls" and stripped.get(key) != upstream.get(key):
                    ours, theirs = stripped.get(key), upstream.get(key)
                    errors.append(f"  {key}: ours {ours!r}, upstream {theirs!r}")
            ours, theirs = stripped.get("syscalls", []), upstream.get("syscalls", [])
            for i in range(max(len(ours), len(theirs))):
                a = ours[i] if i < len(ours) else None
                b = theirs[i] if i < len(theirs) else None
                if a == b:
                    continue
                if a and b and but_names(a) == but_names(b):
                    extra = sorted(set(a["names"]) - set(b["names"]))
                    missing = sorted(set(b["names"]) - set(a["names"]))
                    errors.append(f"  syscalls[{i}] names: extra {extra}, missing {missing}")
                else:
                    errors.append(f"  syscalls[{i}]: ours {a}, upstream {b}")
    else:
        digest = hashlib.sha256(canonical(stripped)).hexdigest()
        if digest != UPSTREAM_CANONICAL_SHA256:
            errors.append(
                f"{profile_path} less io_uring is not {UPSTREAM} (canonical SHA-256 {digest}, "
                f"expected {UPSTREAM_CANONICAL_SHA256}); run with --upstream FILE to see where"
            )
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", type=pathlib.Path, default=HERE / "seccomp.json")
    parser.add_argument(
        "--upstream", type=pathlib.Path, help="the upstream default.json to compare with"
    )
    args = parser.parse_args()
    errors = check(args.profile, args.upstream)
    for line in errors:
        print(line, file=sys.stderr)
    if errors:
        return 1
    print(f"ok: {args.profile} is {UPSTREAM} plus {', '.join(IO_URING)}, allowed unconditionally")
    return 0


if __name__ == "__main__":
    sys.exit(main())
