#!/usr/bin/env python3
"""Keeps a shared Cargo target dir to what the project's own builds use.

Every change of a dependency, a feature set or a compiler flag leaves the previous artifacts
behind in $CARGO_TARGET_DIR: after a few weeks of `make test` and `make bench` the cache folder
held 69 GB, and CI, which reuses it, failed to link for want of disk. This script asks Cargo which
units the project's builds use (each build below is run with --message-format=json; a build that
is already up to date only lists its units, in seconds) and deletes every other unit's files from
deps/, build/ and .fingerprint/, and the incremental caches.

    infra/sweep-target.py ci       the builds `make test` runs (what .ci/run keeps between runs)
    infra/sweep-target.py all      those, the local-cloud and bench helpers, and `make bench`'s
                                   release builds
    --dry-run                      print what would go, delete nothing

A unit is kept by its metadata hash (the 16 hex digits Cargo puts in every file name of a unit),
so an rlib, its rmeta, its dep-info and its build-script output go or stay together. A build that
is not up to date is run for real: sweep after the builds it names, not instead of them.
"""

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HASH = re.compile(r"-([0-9a-f]{16})(?:\.|$)")


def function_packages():
    return [arg for toml in sorted((ROOT / "functions").glob("*/Cargo.toml"))
            for arg in ("-p", toml.parent.name)]


# The builds whose units stay, by profile directory. Keep in step with the Makefile.
CI_BUILDS = {
    "debug": [
        ["build", "--workspace", "--bins"],
        ["test", "--workspace", "--no-run"],
        # With the Makefile's arguments: clippy lints again when they change.
        ["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
        ["clippy", "-p", "bench", "--features", "warm", "--all-targets", "--", "-D", "warnings"],
    ],
}
ALL_BUILDS = {
    "debug": CI_BUILDS["debug"] + [
        ["build", "-p", "localcloud", "--bin", "localcloud"],
        ["build", "-p", "bench", "--bin", "ferrocart-bench"],
        ["test", "-p", "domain-events", "--no-run"],  # make schemas
        ["build", "-p", "relay", "--bin", "republish", "--features", "operator"],  # README: republishing
    ],
    "release": [
        ["build", "--release", *function_packages(), "--bins"],
        ["build", "--release", "-p", "hello-lambda"],
        ["build", "--release", "-p", "bench", "--features", "warm", "--bin", "ferrocart-warm"],
    ],
}


def uplifted_hashes(profile_dir):
    """Cargo reports a binary (and a workspace library) by the copy it hard-links into the profile
    folder, debug/catalog, which has no hash: the hashes of the units in deps/ that are those files.
    Two builds can make the same binary with different features (`cargo test` unifies the
    dev-dependencies' features), and each links its own on every run, so ask after each build."""
    uplifted = {entry.stat().st_ino for entry in profile_dir.iterdir() if entry.is_file()}
    return {found.group(1) for entry in (profile_dir / "deps").iterdir()
            if entry.is_file() and entry.stat().st_ino in uplifted
            for found in [HASH.search(entry.name)] if found}


def used_hashes(builds, profile_dir):
    """The metadata hashes of every unit the builds produce or find up to date."""
    hashes = set()
    for args in builds:
        print("sweep: cargo " + " ".join(args), file=sys.stderr)
        # The format goes before any `--` (what follows it is clippy's).
        command, *rest = args
        run = subprocess.run(["cargo", command, "--message-format=json", *rest], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
        if run.returncode != 0:
            sys.exit(f"sweep: `cargo {' '.join(args)}` failed; nothing deleted from {profile_dir}")
        for line in run.stdout.splitlines():
            if not line.startswith("{"):
                continue
            message = json.loads(line)
            paths = list(message.get("filenames") or [])
            paths += [message[key] for key in ("executable", "out_dir") if message.get(key)]
            for path in paths:
                # The unit's hash is in its file name, or in its build/<pkg>-<hash>/ folder.
                for part in Path(path).parts[-3:]:
                    found = HASH.search(part)
                    if found:
                        hashes.add(found.group(1))
        hashes |= uplifted_hashes(profile_dir)
    return hashes


def size(path):
    if path.is_dir() and not path.is_symlink():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return path.lstat().st_size


def sweep(profile_dir, keep, dry_run):
    # Cargo's own lock on the profile folder, held until the files are gone: no build of another
    # checkout sharing this target dir is between compiling a unit and linking it meanwhile.
    with open(profile_dir / ".cargo-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doomed = []
        for sub in ("deps", "build", ".fingerprint"):
            folder = profile_dir / sub
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                found = HASH.search(entry.name)
                if found and found.group(1) not in keep:
                    doomed.append(entry)
        if (profile_dir / "incremental").exists():
            doomed.append(profile_dir / "incremental")
        freed = 0
        for entry in doomed:
            freed += size(entry)
            if not dry_run:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    return len(doomed), freed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("set", choices=("ci", "all"))
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    builds = CI_BUILDS if args.set == "ci" else ALL_BUILDS
    for profile, profile_builds in builds.items():
        profile_dir = target / profile
        if not profile_dir.is_dir():
            continue
        keep = used_hashes(profile_builds, profile_dir)
        count, freed = sweep(profile_dir, keep, args.dry_run)
        verb = "would free" if args.dry_run else "freed"
        print(f"sweep: {profile}: kept {len(keep)} units, {verb} {freed / 1e9:.1f} GB "
              f"({count} files and folders)", file=sys.stderr)


if __name__ == "__main__":
    main()
