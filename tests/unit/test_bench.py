"""`make bench`'s own logic, without an emulator: reading the benchmark
guests' console lines into figures for each backend, the report's sections,
the size breakdown, and that its guests and bare kernel build."""

import io
import json
import struct

import pytest
from elftools.elf.elffile import ELFFile

from bench import __main__ as bench_main
from bench import bare, configs, figures, report
from bench.figures import BenchError
from bench.sizes import sizes, source_lines
from builder import build, config, guest_images, hw
from builder.errors import BuildError

# What Bochs printed for two bench guests under VMX, slices ending at a TSC
# deadline (the exit records trimmed, three of them changed to show slice
# ends inside a loop).
TWO_GUEST_RUN = """\
[hv] hvbuild hypervisor: backend vmx, 2 guests, time slice 200,000 cycles
[probe] up
[probe] boot start 0x00000000:0x03009a8f up 0x00000000:0x0300aaf9
[peer01] up
[peer01] boot start 0x00000000:0x0303a88d up 0x00000000:0x0303ba51
[probe] slices window 32 run 6399458 away 6412736 away-min 200398 away-max 200398 loop 9
[probe] exit-cpuid n 1000 with 97002 without 3002
[probe] exit-cpuid n 1000 with 297002 without 3002
[probe] exit-cpuid n 1000 with 97002 without 203002
[probe] exit-hypercall n 1000 with 81002 without 3002
[probe] done
[hv] probe exited with code 0
[peer01] slices window 32 run 6399458 away 6412736 away-min 200398 away-max 200398 loop 9
[peer01] done
[hv] summary: probe exited with code 0, 22045 VM exits, first entry at cycle 28080
[hv] summary: peer01 exited with code 0, 357 VM exits, first entry at cycle 228270
[hv] powering off
""".splitlines()

# The slices records of the VMX scaling run with 32 guests: every guest
# printed the same one.
THIRTY_TWO_GUEST_RUN = [
    "[hv] hvbuild hypervisor: backend vmx, 32 guests, time slice 200,000 cycles",
    *(f"[{name}] slices window 32 run 6399458 away 198595136 away-min 6206098 away-max 6206098 loop 9"
      for name in configs.guest_names(32)),
]

# The same guests on Bochs' AMD model: slices end by the PIT's NMI.
TWO_GUEST_SVM_RUN = """\
[hv] hvbuild hypervisor: backend svm, 2 guests, time slice 200,000 cycles
[hv] svm: the CPU reports each exit's next RIP (NRIPS)
[hv] svm: each run ends at its deadline, by an NMI from the PIT
[probe] up
[probe] boot start 0x00000000:0x0300e539 up 0x00000000:0x0300f50d
[peer01] up
[peer01] boot start 0x00000000:0x0303ada4 up 0x00000000:0x0303bed2
[probe] slices window 32 run 6394284 away 6404204 away-min 200131 away-max 200135 loop 9
[probe] exit-cpuid n 1000 with 89002 without 3002
[probe] exit-hypercall n 1000 with 73002 without 3002
[probe] done
[hv] probe exited with code 0
[peer01] slices window 32 run 6394311 away 6404172 away-min 200130 away-max 200134 loop 9
[peer01] done
[hv] summary: probe exited with code 0, 22025 VM exits, first entry at cycle 101623
[hv] summary: peer01 exited with code 0, 357 VM exits, first entry at cycle 284002
[hv] powering off
""".splitlines()


# What Bochs printed for a victim beside a CPUID storm under VMX, before
# slices counted the hypervisor's time (boot records trimmed) ...
STORM_VMX_RUN = """\
[hv] hvbuild hypervisor: backend vmx, 2 guests, time slice 200,000 cycles
[victim01] up
[storm] up
[storm] storm cpuid 133202 slices 6
[storm] done
[hv] storm exited with code 0
[victim01] share rounds 4 run 799963 away 7289344 away-max 1822336
[victim01] done
[hv] victim01 exited with code 0
[hv] all guests have stopped
[hv] summary: victim01 exited with code 0, 257 VM exits, first entry at cycle 27905
[hv] summary: storm exited with code 0, 133402 VM exits, first entry at cycle 266487
[hv] powering off
""".splitlines()

# ... and for three victims beside it under SVM, on Bochs' AMD model.
STORM_SVM_RUN = """\
[hv] hvbuild hypervisor: backend svm, 4 guests, time slice 200,000 cycles
[storm] storm cpuid 13206 slices 6
[hv] storm exited with code 0
[victim01] share rounds 4 run 799371 away 2400040 away-max 600010
[victim02] share rounds 4 run 799555 away 2399860 away-max 599965
[victim03] share rounds 4 run 799531 away 2399876 away-max 599969
[hv] summary: storm exited with code 0, 13404 VM exits, first entry at cycle 683808
""".splitlines()


def test_values_are_decimal_hex_or_a_high_low_tsc():
    assert figures.parse_value("1599923") == 1599923
    assert figures.parse_value("0x0133a6b5") == 0x133A6B5
    assert figures.parse_value("0x00000001:0x030b07b5") == (1 << 32) + 0x030B07B5


def test_only_benchmark_records_are_read_guest_and_bare_alike():
    found = figures.records(TWO_GUEST_RUN + ["kernel ticks 5201930 checksum 0x0133a6b5"])
    assert [(r.guest, r.kind) for r in found][:3] == [("probe", "boot"), ("peer01", "boot"),
                                                      ("probe", "slices")]
    assert found[-1] == figures.Record(None, "kernel", {"ticks": 5201930, "checksum": 0x133A6B5})
    assert not any(r.kind in ("up", "done") or r.guest == "hv" for r in found)


def test_an_exit_costs_the_least_loop_with_it_less_the_least_without_over_n():
    """A slice end can land in either loop of a repeat: the least of each is
    kept on its own, and both disturbed repeats are reported."""
    costs = figures.exit_costs(figures.records(TWO_GUEST_RUN), "vmx")
    assert costs["cpuid"] == figures.ExitCost("cpuid", 94.0, repeats=3, disturbed=2,
                                              exit_ticks=figures.EXIT_TICKS["vmx"])
    assert costs["cpuid"].instructions == 94.0 - figures.EXIT_TICKS["vmx"]
    assert costs["hypercall"].ticks == 78.0


def test_each_backend_takes_its_own_ticks_per_exit_off(monkeypatch):
    monkeypatch.setitem(figures.EXIT_TICKS, "svm", 3)
    costs = figures.exit_costs(figures.records(TWO_GUEST_SVM_RUN), "svm")
    assert (costs["hypercall"].ticks, costs["hypercall"].instructions) == (70.0, 67.0)
    assert figures.exit_costs(figures.records(TWO_GUEST_RUN), "vmx")["hypercall"].instructions == 77.0


def test_the_vmx_world_switch_is_the_mean_slice_less_the_guests_own_time():
    """(run + away) / (K N) - run / K - loop, averaged over the guests: both
    198.46875 ticks.  The paths hand-counted are 197 instructions into the
    second guest and 198 when the scheduler wraps, each + 1 tick per exit:
    a mean of 198.5 ticks, which the estimate meets within its bound."""
    switch = figures.world_switch(figures.records(TWO_GUEST_RUN), "vmx")
    assert switch == figures.WorldSwitch(198.46875, error=0.125, jitter=0, exit_ticks=1)
    assert switch.instructions == 198.46875 - figures.EXIT_TICKS["vmx"]
    # (loop - 1)(N - 1) / (K N): the window's phase; every round alike, so no jitter
    assert switch.error == 8 * 1 / (32 * 2)
    assert abs(switch.ticks - 198.5) <= switch.error


def test_rounds_that_differ_show_as_jitter_and_widen_the_bound():
    lines = [line.replace("[probe] slices window 32 run 6399458 away 6412736 away-min 200398 away-max 200398",
                          "[probe] slices window 32 run 6399458 away 6412736 away-min 200398 away-max 200500")
             for line in TWO_GUEST_RUN]
    switch = figures.world_switch(figures.records(lines), "vmx")
    assert switch.jitter == 102
    assert switch.error == (8 + 102 / 2) * 1 / (32 * 2)
    assert switch.ticks == 198.46875


def test_the_vmx_switch_is_flat_from_2_to_32_guests_where_fixed_slices_were_not():
    """Counted whatever ends a slice, the switch falls only by the wrapping
    switch's share (one instruction per round: 197 + 1/N instructions by
    hand), within the bounds.  The old VMX method, which took every other
    slice to be time_slice - 1 guest instructions, no longer holds now that
    a slice is time_slice cycles of total time: on the same lines it falls
    from 195 to 191.25 ticks, a constant per round divided by N."""
    two = figures.world_switch(figures.records(TWO_GUEST_RUN), "vmx")
    thirty_two = figures.world_switch(figures.records(THIRTY_TWO_GUEST_RUN), "vmx")
    assert thirty_two.ticks == 197.970703125
    assert thirty_two.error == 8 * 31 / (32 * 32)
    assert abs(thirty_two.ticks - (198 + 1 / 32)) <= thirty_two.error
    assert abs(two.instructions - thirty_two.instructions) <= 1                   # the spread target
    fixed_slices = [(r.fields["away-min"] - r.fields["loop"] - (n - 1) * 199_999) / n
                    for n, lines in ((2, TWO_GUEST_RUN), (32, THIRTY_TWO_GUEST_RUN))
                    for r in figures.of_kind(figures.records(lines), "slices")[:1]]
    assert fixed_slices == [195.0, 191.25]


def test_the_svm_world_switch_is_the_mean_slice_less_the_guests_own_time():
    """The same formula on Bochs' AMD model: probe 146.0 and peer01
    145.078125 ticks; the paths hand-counted in the tree that printed them
    (before the shared-ASID check, 2 more) are 144 instructions into the
    second guest and 145 when the scheduler wraps, each + 1 tick per exit."""
    switch = figures.world_switch(figures.records(TWO_GUEST_SVM_RUN), "svm")
    assert switch.ticks == 145.5390625
    assert switch.instructions == 144.5390625
    assert switch.jitter == 4
    # (loop - 1 + jitter / 2)(N - 1) / (K N): the window's phase and the PIT's jitter
    assert switch.error == (8 + 2) * 1 / (32 * 2)
    assert abs(switch.ticks - 145.5) <= switch.error


def test_guests_that_disagree_on_the_window_are_an_error():
    lines = [line.replace("[peer01] slices window 32", "[peer01] slices window 8") for line in TWO_GUEST_RUN]
    with pytest.raises(BenchError, match="window"):
        figures.world_switch(figures.records(lines), "vmx")


def test_fairness_compares_guests_not_the_hypervisors_share():
    found = figures.records(TWO_GUEST_RUN)
    assert figures.fairness(found) == {"probe": pytest.approx(1.0), "peer01": pytest.approx(1.0)}
    assert figures.switch_overhead(found) == pytest.approx(1 - 2 * 6399458 / (6399458 + 6412736))
    unfair = [line.replace("[peer01] slices window 32 run 6399458 away 6412736",
                           "[peer01] slices window 32 run 7199458 away 5612736") for line in TWO_GUEST_RUN]
    # shares of the CPU 0.49948 and 0.56192: of the guests' time, 0.941 and 1.059 of 1/2
    assert figures.fairness_deviation(figures.fairness(figures.records(unfair))) == pytest.approx(
        0.0588, abs=1e-4)


def test_a_victims_share_is_its_own_ticks_over_its_window_of_whole_rounds():
    storm = figures.storm_shares(figures.records(STORM_VMX_RUN))
    assert storm.guests == 2
    assert storm.storm_cpuids == 133202
    assert storm.shares == {"victim01": 799963 / (799963 + 7289344)}     # 9.9 %: the VMX bug
    # one loop of at most 12 ticks of its own in each of the 4 away gaps
    assert storm.errors == {"victim01": 4 * figures.VICTIM_LOOP_MAX / (799963 + 7289344)}


def test_the_least_victims_share_is_the_figure_against_nine_tenths_of_a_fair_one():
    storm = figures.storm_shares(figures.records(STORM_SVM_RUN))
    assert (storm.guests, storm.victim) == (4, "victim01")
    assert storm.worst == pytest.approx(0.24985, abs=1e-5)
    vmx, svm = bench_main.storm_figures([figures.storm_shares(figures.records(STORM_VMX_RUN)), storm])
    assert (vmx.key, vmx.value, str(vmx.target), vmx.verdict) == ("storm_victim_share_2", 9.8891, ">= 45",
                                                                  "MISSES")
    assert (svm.key, svm.value, str(svm.target), svm.verdict) == ("storm_victim_share_4", 24.9849, ">= 22.5",
                                                                  "meets")
    assert svm.error == round(100 * 4 * figures.VICTIM_LOOP_MAX / (799371 + 2400040), 4)


def test_a_storm_that_did_not_finish_or_victims_that_disagree_are_errors():
    with pytest.raises(BenchError, match="storm"):
        figures.storm_shares(figures.records([line for line in STORM_VMX_RUN if "storm cpuid" not in line]))
    with pytest.raises(BenchError, match="share record"):
        figures.storm_shares(figures.records([line for line in STORM_VMX_RUN if "share rounds" not in line]))
    lines = [line.replace("[victim02] share rounds 4", "[victim02] share rounds 3") for line in STORM_SVM_RUN]
    with pytest.raises(BenchError, match="rounds"):
        figures.storm_shares(figures.records(lines))


def test_the_storm_configs_build_for_one_backend_or_both(tmp_path):
    (tmp_path / "svm.toml").write_text(configs.storm(4, "svm"))
    (tmp_path / "auto.toml").write_text(configs.storm(2, "auto"))
    four = build.build(config.load(tmp_path / "svm.toml"))
    two = build.build(config.load(tmp_path / "auto.toml"))
    assert [g.name for g in four.layout.guests] == ["victim01", "victim02", "victim03", "storm"]
    assert four.layout.backends == ("svm",)
    assert two.config.hypervisor.time_slice == config.DEFAULT_TIME_SLICE
    assert [g.image.program for g in two.config.guests] == ["bench_victim", "bench_storm"]


def test_the_storm_loops_on_cpuid_leaf_0_whose_round_trip_the_probe_measures():
    storm = config.GuestConfig("storm", config.GUEST_MEMORY_MIN, config.BuiltinImage("bench_storm", 0), None)
    code = guest_images.load(storm, "storm", "auto").segments[0].data
    # xor eax, eax; cpuid; inc edi (the count); rdtsc
    assert code.count(b"\x31\xc0\x0f\xa2\x47\x0f\x31") == 1


def test_boot_cost_puts_the_guests_clock_on_the_hypervisors():
    boot = figures.boot_cost(figures.records(TWO_GUEST_RUN), figures.summaries(TWO_GUEST_RUN))
    assert boot.first_entry == 28080
    assert boot.all_up == 0x0303BA51 - 0x03009A8F + 28080


def test_a_guest_without_a_boot_record_is_an_error():
    lines = [line for line in TWO_GUEST_RUN if not line.startswith("[peer01] boot")]
    with pytest.raises(BenchError, match="peer01"):
        figures.boot_cost(figures.records(lines), figures.summaries(lines))


def test_the_backend_comes_from_the_banner():
    assert figures.backend(TWO_GUEST_RUN) == "vmx"
    assert figures.backend(TWO_GUEST_SVM_RUN) == "svm"
    with pytest.raises(BenchError):
        figures.backend(TWO_GUEST_RUN[1:])


def test_the_kernel_reads_only_inside_its_buffer():
    constants = bare.constants()
    steps, stride = constants["BENCH_KERNEL_STEPS"], constants["BENCH_KERNEL_STRIDE"]
    last_read = constants["BENCH_KERNEL_PASS_END"] - constants["BENCH_KERNEL_PASS_SHIFT"] \
        + (steps - 1) * stride
    assert last_read + 4 <= 4 * constants["BENCH_KERNEL_WORDS"]


@pytest.fixture(scope="module")
def bench_builds(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bench")
    results = {}
    for guests in (2, 3):
        path = directory / f"{guests}.toml"
        path.write_text(configs.scaling(guests, "vmx"))
        results[guests] = build.build(config.load(path))
    return results


def test_per_guest_parts_are_not_counted_as_the_hypervisors(bench_builds):
    two, three = sizes(bench_builds[2]), sizes(bench_builds[3])
    assert (two.rodata, two.rwdata, two.tables, two.stacks) == \
        (three.rodata, three.rwdata, three.tables, three.stacks)
    assert two.per_guest == three.per_guest > hw.PAGE_SIZE      # a VMCS page at the least
    assert two.code_and_data == two.code + two.rodata + two.rwdata


def test_the_benchmark_guests_build_at_the_default_time_slice_for_one_backend(bench_builds, tmp_path):
    assert [g.name for g in bench_builds[3].layout.guests] == ["probe", "peer01", "peer02"]
    assert bench_builds[3].config.hypervisor.time_slice == config.DEFAULT_TIME_SLICE
    assert bench_builds[3].layout.backends == ("vmx",)
    (tmp_path / "kernel.toml").write_text(configs.kernel("svm"))
    kernel = build.build(config.load(tmp_path / "kernel.toml"))
    assert kernel.layout.guests[0].memory_size == configs.KERNEL_GUEST_MEMORY
    assert kernel.layout.backends == ("svm",)


@pytest.mark.parametrize(("backend", "instruction"), [("vmx", b"\x0f\x01\xc1"),    # VMCALL
                                                      ("svm", b"\x0f\x01\xd9")])   # VMMCALL
def test_the_probe_times_its_backends_hypercall(backend, instruction):
    """The measured loop: mov eax, BENCH_HYPERCALL_NOOP; <hypercall>; dec ebp."""
    probe = config.GuestConfig("probe", config.GUEST_MEMORY_MIN, config.BuiltinImage("bench_probe", 0), None)
    code = guest_images.load(probe, "probe", backend).segments[0].data
    loop = b"\xb8" + struct.pack("<I", guest_images.BENCH_HYPERCALL_NOOP)
    other = ({b"\x0f\x01\xc1", b"\x0f\x01\xd9"} - {instruction}).pop()
    assert code.count(loop + instruction + b"\x4d") == 1             # with it, and ...
    assert code.count(loop + b"\x4d") == 1                           # ... the same loop without it
    assert loop + other not in code


def test_the_probe_needs_an_image_for_one_backend(tmp_path):
    path = tmp_path / "auto.toml"
    path.write_text(configs.scaling(2, "vmx").replace('backend = "vmx"', 'backend = "auto"'))
    with pytest.raises(BuildError, match=r"guest\[0\]\.builtin: 'bench_probe' .* backend to 'vmx' or 'svm'"):
        config.load(path)


def test_each_backend_alone_takes_less_than_both():
    vmx, svm, both = (sizes(build.build(configs.default(backend))) for backend in ("vmx", "svm", "auto"))
    assert configs.default("svm").guests == config.load().guests
    assert max(vmx.code, svm.code) < both.code
    assert max(vmx.code_and_data, svm.code_and_data) < both.code_and_data


def test_the_report_has_a_section_per_backend_with_its_target_and_errors(tmp_path):
    switch = report.Figure("world_switch", "world switch", 144.5, "hv instr", False,
                           report.Target("<=", 400), error=0.15625)
    exact = report.Figure("exit_cpuid", "CPUID round trip", 93, "hv instr", False, report.Target("<=", 100))
    row = report.ScalingRow(guests=2, build_s=None, image_bytes=1, first_entry=2, all_up=3, cpuid=85,
                            world_switch=144.5, switch_error=0.15625, jitter=4, fairness=0, disturbed=0)
    sections = [report.Section("vmx", "backend vmx", {"target": "bochs", "method": "exact"}, [exact], []),
                report.Section("svm", "backend svm", {"target": "bochs-svm", "method": "mean"}, [switch],
                               [row])]
    text = report.table(sections, ["title"])
    assert "== backend vmx" in text and "== backend svm" in text
    assert "144.5 ±0.16" in text
    assert "     2        -" in text                                # not timed for this backend
    path = tmp_path / "results.json"
    report.write(report.results(sections, {"commit": "abc"}), path)
    document = json.loads(path.read_text())
    assert document["commit"] == "abc"
    assert document["sections"]["svm"]["target"] == "bochs-svm"
    assert document["sections"]["svm"]["figures"]["world_switch"]["error"] == 0.15625
    assert document["sections"]["vmx"]["figures"]["exit_cpuid"] == {
        "value": 93, "unit": "hv instr", "kind": "counted", "error": 0.0, "target": "<= 100",
        "meets_target": True}
    assert document["sections"]["svm"]["scaling"][0]["build_s"] is None


def test_the_bare_kernel_is_a_multiboot_elf_entered_at_its_entry_label():
    image = bare.image()
    offset = image.find(struct.pack("<I", hw.MULTIBOOT_HEADER_MAGIC))
    assert 0 <= offset < hw.MULTIBOOT_SEARCH_LIMIT and offset % 4 == 0
    magic, flags, checksum = struct.unpack_from("<3I", image, offset)
    assert (magic + flags + checksum) & 0xFFFFFFFF == 0
    elf = ELFFile(io.BytesIO(image))
    assert elf["e_entry"] == elf.get_section_by_name(".symtab").get_symbol_by_name("bare_entry")[0][
        "st_value"]


def test_source_lines_leave_out_blank_and_comment_lines(tmp_path):
    template = tmp_path / "t.s.j2"
    template.write_text("# a header\n\nlabel:\n    mov eax, 1          # a reason\n    {# jinja #}\n    ret\n")
    assert source_lines([template]) == 3


def test_the_share_configs_give_each_guest_its_share_and_whole_rounds(tmp_path):
    (tmp_path / "storm.toml").write_text(configs.shares(4, "storm", "vmx"))
    (tmp_path / "compute.toml").write_text(configs.shares(2, "compute", "auto"))
    storm = build.build(config.load(tmp_path / "storm.toml")).config
    compute = build.build(config.load(tmp_path / "compute.toml")).config
    assert [(g.name, g.share) for g in storm.guests] == [
        ("weighted00", 1), ("weighted01", 3), ("weighted02", 2), ("storm", 1)]
    assert configs.share_total(4, "storm") == 7 and configs.share_total(2, "compute") == 4
    # a window of SHARE_ROUNDS whole rounds: every guest's shares, in time slices
    units = {g.image.heartbeats for g in storm.guests if g.image.program == "bench_share"}
    assert units == {configs.SHARE_ROUNDS * 7 * config.DEFAULT_TIME_SLICE // guest_images.BENCH_SHARE_UNIT}
    assert [g.image.heartbeats for g in storm.guests if g.image.program == "bench_storm"] == [
        2 * configs.SHARE_ROUNDS]
    assert [g.image.program for g in compute.guests] == ["bench_share", "bench_share"]


# What Bochs printed for three guests with shares 1, 3 and 2 under VMX.
SHARE_RUN = """\
[weighted01] weighted run 2398022 window 4800000 from 59448067
[weighted02] weighted run 1598486 window 4800000 from 59848283
[weighted00] weighted run 799410 window 4800000 from 60048419
""".splitlines()


def test_weighted_shares_compare_each_guests_part_with_its_shares():
    ratios = figures.weighted_shares(figures.records(SHARE_RUN),
                                     {"weighted00": 1, "weighted01": 3, "weighted02": 2}, 6)
    assert ratios == pytest.approx({"weighted00": 799410 / 800000, "weighted01": 2398022 / 2400000,
                                    "weighted02": 1598486 / 1600000})
    assert figures.share_deviation(ratios) == pytest.approx(1 - 1598486 / 1600000)
    with pytest.raises(figures.BenchError, match="no weighted record from weighted03"):
        figures.weighted_shares(figures.records(SHARE_RUN), {"weighted03": 1}, 1)
