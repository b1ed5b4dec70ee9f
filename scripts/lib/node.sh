# Sourced by scripts/bootstrap, scripts/node-env and bin/runbook: which Node.js this checkout runs on.
# The release is pinned in .node-version. The bootstrap installs it from the npm registry's official
# builds (node-linux-<arch>) into a cache outside the repository when the machine's own Node.js is of
# another major version; a machine (or image) whose Node.js already has the pinned major uses its own.
RUNBOOK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE_VERSION="$(tr -d ' \n' < "$RUNBOOK_ROOT/.node-version")"
NODE_MAJOR="${NODE_VERSION%%.*}"
NODE_HOME="${RUNBOOK_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runbook/node}/$NODE_VERSION"

# Prints the directory holding the node binary to run; fails when neither the pinned install nor a
# machine Node.js of the pinned major is there.
project_node_bin() {
  if [ -x "$NODE_HOME/bin/node" ]; then
    echo "$NODE_HOME/bin"
    return 0
  fi
  local machine major
  machine="$(command -v node 2>/dev/null)" || return 1
  major="$("$machine" -p 'process.versions.node.split(".")[0]' 2>/dev/null)" || return 1
  [ "$major" = "$NODE_MAJOR" ] || return 1
  dirname "$machine"
}
