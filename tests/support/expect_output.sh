#!/bin/sh
# expect_output.sh REGEX COMMAND [ARG...]: runs COMMAND, prints its output (stdout and stderr), and
# passes only when COMMAND exits 0 *and* its output matches REGEX (Perl syntax; '.' spans lines).
# ctest's PASS_REGULAR_EXPRESSION alone passes a command that printed the right text and then failed.
regex=$1
shift
out=$("$@" 2>&1)
code=$?
printf '%s\n' "$out"
if [ "$code" -ne 0 ]; then
  echo "expect_output: the command exited with $code" >&2
  exit 1
fi
if ! printf '%s' "$out" | grep -Pzq -- "(?s)$regex"; then
  echo "expect_output: the output does not match: $regex" >&2
  exit 1
fi
