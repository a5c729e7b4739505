#!/usr/bin/env bash
# The system packages that `make setup`, `make demo` and `make test` need, checked before anything
# runs. A missing one is installed with apt-get when this user can (root with apt, as on CI);
# otherwise the command stops with one line that says what to install.
#
# Usage: scripts/system-deps.sh TARGET   (setup, demo or test; $PYTHON is the interpreter to check)
set -uo pipefail
target="${1:?usage: system-deps.sh setup|demo|test}"
PYTHON="${PYTHON:-python3}"

# One line per package: Debian package, the make targets that need it ("all" = every target),
# and how to tell that it is present: "command NAME" (on PATH) or "python_module NAME".
REQUIREMENTS='
python3-venv  all   python_module ensurepip  # python3 -m venv creates .venv
bubblewrap    test  command bwrap            # the sandbox that runs model-written code
chromium      test  command chromium         # the viewer tests drive a real headless browser
chromium-driver test command chromedriver    # ... through selenium and ChromeDriver
'

present() {  # present KIND NAME
  case "$1" in
    command) command -v "$2" >/dev/null 2>&1 ;;
    python_module) "$PYTHON" -c "import $2" >/dev/null 2>&1 ;;
    *) echo "system-deps.sh: unknown check '$1'" >&2; exit 2 ;;
  esac
}

missing=() why=()
while read -r package needed_by kind name _; do
  [ -n "$package" ] || continue
  case " $needed_by " in *" all "* | *" $target "*) ;; *) continue ;; esac
  if ! present "$kind" "$name"; then
    missing+=("$package") why+=("$name")
  fi
done <<< "$REQUIREMENTS"
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "grpokit: installing ${missing[*]} with apt-get"
  log="$(mktemp)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"
    echo "grpokit: apt-get could not install ${missing[*]} (its output is above)" >&2
    exit 1
  fi
  rm -f "$log"
  exit 0
fi

echo "grpokit: make $target needs ${missing[*]} (missing: ${why[*]}); install it first," \
     "e.g. 'sudo apt-get install ${missing[*]}' (or your system's package providing ${why[*]}), then run make $target again" >&2
exit 1
