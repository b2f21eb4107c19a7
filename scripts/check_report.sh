# One line per check, for the scripts/check_*.sh scripts: "ok    <check>" or "FAIL  <check>" with the
# detail file indented under it. Sourced; sets failed=1 on a failure, which the caller exits with.
failed=0

result() { # result <status> <check> [detail file]
  if [ "$1" -eq 0 ]; then
    echo "ok    $2"
  else
    echo "FAIL  $2"
    [ -n "${3:-}" ] && sed 's/^/      /' "$3"
    failed=1
  fi
}
