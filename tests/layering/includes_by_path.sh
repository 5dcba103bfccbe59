#!/bin/sh
# Fails if a tracked C source or header includes a project header by bare
# name or through "..": every quoted include is a path from the repository
# root ("storage/storage.h"), so the staging include directories of the
# build decide what each folder may see.
set -eu
cd "$1"
bad=$(git ls-files '*.c' '*.h' |
	xargs grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^/"]*|[^"]*\.\./[^"]*)"' || true)
if [ -n "$bad" ]; then
	echo "includes that do not name their folder from the repository root:"
	echo "$bad"
	exit 1
fi
echo "every quoted include names its folder from the repository root"
