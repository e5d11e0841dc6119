"""`make bench`'s own logic, without an emulator: reading the benchmark
guests' console lines into figures, the size breakdown, and that its
guests and bare kernel build."""

import io
import struct

import pytest
from elftools.elf.elffile import ELFFile

from bench import bare, configs, figures
from bench.figures import BenchError
from bench.sizes import sizes, source_lines
from builder import build, config, hw

TWO_GUEST_RUN = """\
[hv] hvbuild hypervisor: backend vmx, 2 guests, time slice 200,000 cycles
[probe] up
[probe] boot start 0x00000000:0x030b07b5 up 0x00000000:0x030b1793
[peer01] up
[peer01] boot start 0x00000000:0x030ea39b up 0x00000000:0x030eb379
[probe] slices window 8 run 1599923 away 1601048 away-min 200131 away-max 200131 loop 9
[probe] exit-cpuid n 1000 with 77002 without 3002
[probe] exit-cpuid n 1000 with 277002 without 3002
[probe] exit-cpuid n 1000 with 77002 without 203002
[probe] exit-vmcall n 1000 with 67002 without 3002
[probe] done
[hv] probe exited with code 0
[peer01] slices window 8 run 1599923 away 1601048 away-min 200131 away-max 200131 loop 9
[peer01] done
[hv] summary: probe exited with code 0, 21953 VM exits, first entry at cycle 27905
[hv] summary: peer01 exited with code 0, 315 VM exits, first entry at cycle 264423
[hv] powering off
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
    costs = figures.exit_costs(figures.records(TWO_GUEST_RUN))
    assert costs["cpuid"] == figures.ExitCost("cpuid", 74.0, repeats=3, disturbed=2)
    assert costs["cpuid"].instructions == 74.0 - figures.EXIT_TICKS
    assert costs["vmcall"].ticks == 64.0


def test_the_world_switch_is_the_away_gap_less_the_other_slices_over_n():
    # 200131 = loop 9 + the other guest's slice of 199,999 + 2 switches of 61.5 ticks
    switch = figures.world_switch(figures.records(TWO_GUEST_RUN), 200_000)
    assert switch == figures.WorldSwitch(61.5, uniform=True)
    assert switch.instructions == 61.5 - figures.EXIT_TICKS


def test_rounds_that_differ_make_the_world_switch_not_uniform():
    lines = [line.replace("away-max 200131", "away-max 200500") for line in TWO_GUEST_RUN]
    assert not figures.world_switch(figures.records(lines), 200_000).uniform


def test_fairness_compares_guests_not_the_hypervisors_share():
    found = figures.records(TWO_GUEST_RUN)
    assert figures.fairness(found) == {"probe": pytest.approx(1.0), "peer01": pytest.approx(1.0)}
    assert figures.switch_overhead(found) == pytest.approx(1 - 2 * 1599923 / (1599923 + 1601048))
    unfair = [line.replace("[peer01] slices window 8 run 1599923 away 1601048",
                           "[peer01] slices window 8 run 1799923 away 1401048") for line in TWO_GUEST_RUN]
    # shares of the CPU 0.49983 and 0.56230: of the guests' time, 0.941 and 1.059 of 1/2
    assert figures.fairness_deviation(figures.fairness(figures.records(unfair))) == pytest.approx(
        0.0588, abs=1e-4)


def test_boot_cost_puts_the_guests_clock_on_the_hypervisors():
    boot = figures.boot_cost(figures.records(TWO_GUEST_RUN), figures.summaries(TWO_GUEST_RUN))
    assert boot.first_entry == 27905
    assert boot.all_up == 0x030EB379 - 0x030B07B5 + 27905


def test_a_guest_without_a_boot_record_is_an_error():
    lines = [line for line in TWO_GUEST_RUN if not line.startswith("[peer01] boot")]
    with pytest.raises(BenchError, match="peer01"):
        figures.boot_cost(figures.records(lines), figures.summaries(lines))


def test_the_backend_comes_from_the_banner():
    assert figures.backend(TWO_GUEST_RUN) == "vmx"
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
        path.write_text(configs.scaling(guests))
        results[guests] = build.build(config.load(path))
    return results


def test_per_guest_parts_are_not_counted_as_the_hypervisors(bench_builds):
    two, three = sizes(bench_builds[2]), sizes(bench_builds[3])
    assert (two.rodata, two.rwdata, two.tables, two.stacks) == \
        (three.rodata, three.rwdata, three.tables, three.stacks)
    assert two.per_guest == three.per_guest > hw.PAGE_SIZE      # a VMCS page at the least
    assert two.code_and_data == two.code + two.rodata + two.rwdata


def test_the_benchmark_guests_build_at_the_default_time_slice(bench_builds, tmp_path):
    assert [g.name for g in bench_builds[3].layout.guests] == ["probe", "peer01", "peer02"]
    assert bench_builds[3].config.hypervisor.time_slice == config.DEFAULT_TIME_SLICE
    (tmp_path / "kernel.toml").write_text(configs.kernel())
    kernel = build.build(config.load(tmp_path / "kernel.toml"))
    assert kernel.layout.guests[0].memory_size == configs.KERNEL_GUEST_MEMORY


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
