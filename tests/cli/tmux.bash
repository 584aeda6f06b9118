# Helpers of the REPL's terminal tests (sourced after lib.bash; not a test itself): `sluice repl`
# in a tmux pane, on a tmux server of the test's own (-L, killed at the end), with HOME the
# test's folder (so ~/.sluice_history is the test's own).
command -v tmux >/dev/null || skip "tmux is not installed"
SOCK="sluice-repl-$$-$RANDOM"
tm() { tmux -L "$SOCK" -f /dev/null "$@"; }
trap 'tm kill-server 2>/dev/null || true; cleanup' EXIT

# start: a REPL in a new session (the old one is closed after, so the server stays up); when the
# REPL exits the pane says so and stays
session=0
start() {
  session=$((session + 1))
  tm new-session -d -s "r$session" -x 120 -y 50 "cd '$T' && HOME='$T' TERM=xterm '$S' repl; echo REPL-EXITED \$?; sleep 600"
  [ $session -eq 1 ] || tm kill-session -t "r$((session - 1))"
  expect_screen "Ctrl-D to leave"
}
screen() { tm capture-pane -p -J -S -200 -t "r$session"; }
shows() { screen | grep -qF -- "$1"; }
shows_line() { screen | grep -qx -- "$1"; }
keys() { tm send-keys -t "r$session" "$@"; }
# at a prompt (keys typed while the REPL is busy could be dropped: wait for it to ask)
ready() { case "$(screen | grep -v '^$' | tail -1 | sed 's/ *$//')" in ">"|">>") true ;; *) false ;; esac; }
# line TEXT: types TEXT and Enter at the next prompt
line() { until_ok 10 ready || { screen; fail "no prompt"; }; keys -l "$1"; keys Enter; }
# type TEXT: types TEXT at the next prompt
type() { until_ok 10 ready || { screen; fail "no prompt"; }; keys -l "$1"; }
# until SECONDS CMD...: polls CMD; false after SECONDS
until_ok() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.05; done
}
expect_screen() { until_ok 10 shows "$1" || { screen; fail "the screen lacks '$1'"; }; }
expect_line() { until_ok 10 shows_line "$1" || { screen; fail "the screen lacks the line '$1'"; }; }

at_prompt() { [ "$(screen | grep -v '^$' | tail -1 | sed 's/ *$//')" = ">" ]; }
