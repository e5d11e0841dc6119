"""The fuzzer's parts that need no emulator: the generator is deterministic
and its programs assemble into code capstone decodes step by step, the
oracle judges fixed console lines, the minimiser shrinks a fake failure
(fuzz/, docs/FUZZING.md)."""

import json
import random
import subprocess
import sys

import capstone
import pytest
from elftools.elf.elffile import ELFFile

from builder import pool
from builder.render import PROJECT_ROOT
from fuzz import boot, cli, guest, minimize, oracle, rawbytes, templates
from fuzz.boot import BootResult, BootSpec
from fuzz.generator import Program, Step, generate

MEMORY = guest.MEMORY


def steps_json(program: Program) -> str:
    return json.dumps([step.to_json() for step in program.steps])


def test_a_program_is_the_same_for_the_same_seed_and_index_in_any_process():
    here = steps_json(generate(7, 123, MEMORY))
    code = ("import json; from fuzz.generator import generate; from fuzz import guest; "
            "print(json.dumps([s.to_json() for s in generate(7, 123, guest.MEMORY).steps]))")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=PROJECT_ROOT).stdout.strip()
    assert here == there
    assert steps_json(generate(7, 124, MEMORY)) != here
    assert steps_json(generate(8, 123, MEMORY)) != here


def test_every_kind_of_step_is_drawn_and_a_stopping_step_ends_its_program():
    programs = [generate(1, index, MEMORY) for index in range(400)]
    drawn = {step.kind for program in programs for step in program.steps}
    assert drawn == set(templates.TEMPLATES)
    for program in programs:
        assert len(program.steps) >= 1
        ends = [n for n, step in enumerate(program.steps) if templates.TEMPLATES[step.kind].ends]
        assert ends in ([], [len(program.steps) - 1])


def test_steps_round_trip_through_json():
    program = generate(3, 9, MEMORY)
    assert tuple(Step.from_json(json.loads(json.dumps(s.to_json()))) for s in program.steps) == program.steps
    with pytest.raises(ValueError, match="unknown step kind"):
        Step.from_json({"kind": "teleport"})


def test_only_planting_steps_carry_a_tag_and_it_is_their_attackers():
    for index in range(200):
        for step in generate(5, index, MEMORY).steps:
            values = [v for k, v in step.args.items() if isinstance(v, int) and k != "bits"]
            assert not any(templates.is_tagged(v) for v in values), step
            if step.kind.startswith("plant-"):
                text = " ".join(templates.TEMPLATES[step.kind].render(step.args, 3))
                assert f"{templates.tag(3):x}" in text
                assert f"{templates.tag(0):x}" not in text


def _decoded_steps(elf_path):
    """(kind of its step, the bytes between its start and its landing) per step."""
    with open(elf_path, "rb") as stream:
        elf = ELFFile(stream)
        symbols = {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()}
        text = elf.get_section_by_name(".text")
        code, base = text.data(), text["sh_addr"]
    for name, start in symbols.items():
        if name.startswith("fz_step_"):
            end = symbols["fz_land_" + name[len("fz_step_"):]]
            yield name, code[start - base:end - base]


def test_every_generated_step_assembles_into_code_capstone_decodes_whole(tmp_path):
    programs = [generate(11, index, MEMORY) for index in range(30)]
    elf = guest.build(tmp_path, programs, 1, 2)
    disassembler = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    steps = list(_decoded_steps(elf))
    assert len(steps) == sum(len(p.steps) for p in programs)
    for name, data in steps:
        assert data, name
        decoded = sum(i.size for i in disassembler.disasm(data, 0))
        assert decoded == len(data), f"{name}: capstone stops after {decoded} of {len(data)} bytes"


def test_raw_steps_never_jump_call_return_or_make_a_hypercall():
    import random
    rng = random.Random(0)
    for _ in range(300):
        data = bytes.fromhex(rawbytes.draw_bytes(rng))
        assert rawbytes.whole_and_acceptable(data), data.hex()
    assert not rawbytes.whole_and_acceptable(bytes.fromhex("e800000000"))      # call
    assert not rawbytes.whole_and_acceptable(bytes.fromhex("0f01c1"))          # vmcall
    assert not rawbytes.whole_and_acceptable(bytes.fromhex("890500000000"))    # mov [rip], eax


def test_a_skipped_kind_keeps_its_place_and_runs_nothing():
    program = Program(1, 0, (Step.make("cpuid", {"leaf": 1, "subleaf": 0}), Step.make("hlt", {"op": "hlt"})))
    text = guest.source([program], 0, 1, frozenset({"hlt"}))
    assert "    cpuid" in text and "    hlt" not in text
    assert "fz_land_0_1:" in text


# The oracle, on consoles written out here: a good run, then each way it can go wrong.
EXPECT = oracle.Expectation("witness", 3, {"fuzz0": (0, 1), "fuzz1": (2, 3)}, restart=True)


def good_console(beats=3, checksum="0x9a842f18", state="ok"):
    beat = [f"[witness] heartbeat {n} checksum {checksum} state {state}" for n in range(1, beats + 1)]
    return [
        "[hv] hvbuild hypervisor: backend vmx, 3 guests, time slice 200,000 cycles",
        "[witness] before planting: state CHANGED xmm0 dr0",
        "[witness] before the fill: checksum 0x0d095f0c",
        beat[0],
        "[fuzz0] program 0 start",
        "[fuzz0] program 0 end: faults 6:2 13:5",
        "[hv] fuzz0 stopped: EPT_VIOLATION, exit 48, qualification 0x181, guest-physical 0x40000, rip 0x2018a",
        "[hv] fuzz0 restarted (restart 1 of 2)",
        "[fuzz1] program 2 start",
        "[hv] fuzz1 stopped: TRIPLE_FAULT, exit 2, qualification 0x0, rip 0x21b1f",
        "[hv] fuzz1 restarted (restart 1 of 2)",
        beat[1],
        "[fuzz0] program 1 start",
        ("[hv] fuzz0 stopped: string I/O (INS/OUTS) is not emulated, exit 123, qualification 0x4020044, "
        "rip 0x240e3"),
        "[hv] fuzz0 restarted (restart 2 of 2)",
        "[fuzz0] all 2 programs ran",
        "[hv] fuzz0 exited with code 0",
        "[fuzz1] program 3 start",
        "[fuzz1] program 3 end: faults 1:1 tf-lost 1",
        "[hv] fuzz1 stopped: EPT_VIOLATION, exit 48, qualification 0x181, guest-physical 0x40000, rip 0x2018a",
        "[hv] fuzz1 restarted (restart 2 of 2)",
        "[fuzz1] all 2 programs ran",
        "[hv] fuzz1 exited with code 0",
        *beat[2:],
        "[hv] witness exited with code 0",
        "[hv] all guests have stopped",
        "[hv] summary: witness exited with code 0, 847 VM exits, first entry at cycle 10031820",
        "[hv] summary: fuzz0 exited with code 0, restarted 2 times, 552 VM exits, first entry at cycle 23196477",
        "[hv] summary: fuzz1 exited with code 0, restarted 2 times, 621 VM exits, first entry at cycle 53271517",
        "[hv] powering off",
    ]


def test_a_good_run_passes_and_is_counted():
    verdict = oracle.judge(good_console(), EXPECT)
    assert not verdict.failed and not verdict.hangs
    assert verdict.programs_run == 4 and verdict.programs_ended == 2
    assert verdict.stops == {"EPT_VIOLATION": 2, "TRIPLE_FAULT": 1, "string I/O (INS/OUTS) is not emulated": 1}
    assert verdict.exits == 847 + 552 + 621
    assert verdict.faults == {6: 2, 13: 5, 1: 1}
    assert verdict.kinds == {"anomaly:tf-lost"}          # reported, not a failure


def without(lines, text):
    return [line for line in lines if text not in line]


@pytest.mark.parametrize("broken, kind", [
    (without(good_console(), "heartbeat 2 "), "breach:witness-beats"),
    ([line.replace("0x9a842f18", "0x11111111") if "heartbeat 3" in line else line for line in good_console()],
     "breach:witness-checksum"),
    ([line.replace("state ok", "state CHANGED xmm3") if "heartbeat 2" in line else line
      for line in good_console()], "breach:witness-state"),
    (without(good_console(), "[hv] witness exited"), "breach:witness-exit"),
    (good_console()[:12] + ["[fuzz1] breach: msrs +0x0000000000000008 holds attacker 0's tag: 0xf0221e0000000001"]
     + good_console()[12:], "breach:planted-state"),
    (good_console()[:12] + ["[hv] PANIC: exception #GP general protection (vector 13), error code 0x0, rip 0x1"]
     + good_console()[-1:], "crash:panic"),
    (good_console()[:-1], "crash:no-power-off"),
    (without(good_console(), "summary: fuzz1"), "crash:summary"),
])
def test_each_way_a_run_can_go_wrong_fails_it(broken, kind):
    verdict = oracle.judge(broken, EXPECT)
    assert verdict.failed
    assert kind in verdict.kinds, verdict.kinds


def test_the_programs_running_before_a_failure_are_its_suspects_latest_first():
    lines = good_console()
    lines.insert(13, "[hv] PANIC: exception #PF page fault (vector 14), error code 0x0, rip 0x2")
    verdict = oracle.judge(lines, EXPECT)
    assert verdict.culprits == [1, 2, 3, 0]       # running, the next of fuzz1, then older


def test_a_timeout_after_the_witness_finished_is_an_attacker_hang_not_a_crash():
    lines = [line for line in good_console() if "fuzz1" not in line or "program 2" in line]
    lines = lines[:lines.index("[hv] witness exited with code 0") + 1]
    verdict = oracle.judge(lines, EXPECT, timed_out=True)
    assert verdict.kinds == {"hang:attacker-loop"}
    assert "fuzz1: program 2 still ran" in verdict.hangs[0]


def test_a_timeout_before_the_witness_finished_is_a_crash_and_not_also_a_breach():
    verdict = oracle.judge(good_console()[:6], EXPECT, timed_out=True)
    assert verdict.kinds == {"crash:timeout"}


def test_programs_skipped_by_the_restart_count_and_stale_state_are_anomalies():
    lines = [line.replace("program 3 start", "program 2 start") for line in good_console()]
    lines.insert(5, "[fuzz0] stale: x87/sse/avx state +0x00000000000000a0 holds attacker 0's tag: 0x1")
    verdict = oracle.judge(lines, EXPECT)
    assert not verdict.failed
    assert {"anomaly:programs", "anomaly:stale-state"} <= verdict.kinds


def test_ddmin_finds_the_two_steps_that_fail_together():
    calls = []

    def fails(items):
        calls.append(len(items))
        return 3 in items and 7 in items
    assert minimize.ddmin(list(range(20)), fails) == [3, 7]
    assert len(calls) < 60


def test_ddmin_keeps_nothing_when_the_failure_needs_no_step():
    assert minimize.ddmin(list(range(5)), lambda items: True) == []


def test_minimize_replays_the_suspects_and_shrinks_the_one_that_fails_alone():
    """A fake runner: a replay fails where its steps hold the `descriptor` step
    of program 5, as a crash."""
    program = generate(4, 5, MEMORY)
    culprit = next(step for step in program.steps if step.kind != "hlt")
    spec = BootSpec("qemu", 4, 0, 10, 2, True, 24, 60)
    failed = BootResult(spec, verdict=oracle.Verdict(crashes=["x"], kinds={"crash:panic"}, culprits=[6, 5]))
    runs = []

    def runner(replay):
        runs.append(replay)
        crashed = culprit in replay.replay and replay.first == 5
        return BootResult(replay, verdict=oracle.Verdict(crashes=["x"] if crashed else [],
                                                         kinds={"crash:panic"} if crashed else set()))
    regression = minimize.minimize(failed, lambda line: None, runner)
    assert regression.index == 5 and regression.steps == (culprit,)
    assert regression.failure == ("crash:panic",) and regression.open_on == ("qemu",)
    assert runs[0].first == 6 and all(r.attackers == 2 and r.replay is not None for r in runs)
    assert minimize.Regression.from_json(regression.to_json()) == regression


def test_durations_and_a_bad_skip_are_read_as_a_person_writes_them(capsys):
    assert cli.duration("90s") == 90 and cli.duration("10m") == 600 and cli.duration("2h") == 7200
    assert cli.main(["--skip", "teleport", "--count", "1"]) == 2
    assert "no step kind 'teleport'" in capsys.readouterr().err


def _resets(port, low):
    """Would this byte, written to this port, reset the guest (README)?"""
    return ((port == 0x64 and low >= 0xF0 and not low & 1) or (port == 0xCF9 and low & 0x04)
            or (port == 0x92 and low & 0x01))


def test_no_step_writes_a_reset_value_to_a_reset_port_or_leaves_edx_on_one():
    reset_ports = {0x64, 0xCF9, 0x92}
    drawn = 0
    for index in range(400):
        for step in generate(13, index, MEMORY).steps:
            lines = templates.TEMPLATES[step.kind].render(step.args, 1)
            if step.kind != "reset-port":
                assert step.args.get("port") not in reset_ports, step
                continue
            drawn += 1
            value = int(lines[0].removeprefix("mov eax, "), 16)
            assert lines[1] == f"mov edx, {step.args['port']:#x}"
            assert not _resets(step.args["port"], value & 0xFF), step
            assert lines[-1] == "mov edx, 0x80"
    assert drawn > 20
    for port in reset_ports:
        assert all(not _resets(port, templates.harmless(port, value) & 0xFF) for value in range(0x200))
    assert templates.harmless(0x64, 0x12FE) == 0x12FF
    assert not rawbytes.whole_and_acceptable(bytes.fromhex("e664"))           # out 0x64, al
    assert not rawbytes.whole_and_acceptable(bytes.fromhex("e692"))           # out 0x92, al
    assert rawbytes.whole_and_acceptable(bytes.fromhex("e670"))               # out 0x70, al: the RTC's index


def test_a_byte_written_on_the_witnesss_disk_is_a_breach(tmp_path):
    """The witness never uses its disk: after a boot it must be all zeros."""
    pool_path = tmp_path / boot.POOL
    disks = [(boot.WITNESS, boot.CANARY, pool.MIB, "w"), ("fuzz0", "disk", pool.MIB, "a")]
    pool.commit(pool.plan(pool_path, 3 * pool.MIB, disks))
    assert boot.canary_written(pool_path) is None
    extent = pool.read(pool_path).extent(boot.WITNESS, boot.CANARY)
    with open(pool_path, "r+b") as stream:
        stream.seek(extent.start - 1)                 # the byte before it: the attacker's own disk
        stream.write(b"\x01")
    assert boot.canary_written(pool_path) is None
    with open(pool_path, "r+b") as stream:
        stream.seek(extent.start + 4096)
        stream.write(b"\xaa\xaa")
    assert boot.canary_written(pool_path) == "the witness's disk, which it never uses, has 2 non-zero bytes"


def test_the_virtio_step_sets_up_a_queue_and_notifies_the_attackers_disk():
    step = templates.TEMPLATES["virtio"]
    params = step.draw(random.Random(1), guest.MEMORY)
    lines = step.render(params, 0)
    assert "call fuzz_poke_gpa" in lines and lines[-1] == "mov dword ptr [rcx + 0x50], 0"   # QueueNotify
    assert "mov dword ptr [rcx + 0x44], 1" in lines                                        # QueueReady
    assert len(params["descriptors"].split()) in range(1, 5)
