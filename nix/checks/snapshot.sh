# Sourced by the nix/checks scripts: `snapshot DIR` copies the working tree of
# $repo (tracked and untracked files, not ignored ones; outside git, all but
# build outputs) to DIR, so the checks see the tree as it is, not the index.
snapshot() {
    mkdir -p "$1"
    if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$repo" && git ls-files -z -co --exclude-standard |
            tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$1"
    else
        tar -C "$repo" --exclude=./target --exclude=./out -cf - . | tar -xf - -C "$1"
    fi
}
