"""The guest fuzzer (`make fuzz`, `python -m fuzz`): seeded random guest
programs run as attackers beside a witness, judged by an oracle on the
console.  See docs/FUZZING.md."""
