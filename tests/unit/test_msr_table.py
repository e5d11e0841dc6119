"""The emulated-MSR table (builder/msrs.py): consistent with itself, with
CPUID, with the guest's memory map and with the README, and in the image
as defined."""

import struct

import pytest
from test_image import LoadedImage

from builder import build, config, cpuid, hw, msrs
from builder.render import PROJECT_ROOT
from builder.structs import GUEST

BACKEND_KINDS = {msrs.MsrKind.ADDRESS, msrs.MsrKind.VALUE, msrs.MsrKind.EFER, msrs.MsrKind.VALUE32,
                 msrs.MsrKind.PAT}


@pytest.fixture(scope="module")
def result():
    return build.build(config.load())


def test_an_msr_has_at_most_one_entry_per_vendor():
    seen: dict[int, msrs.Vendor] = {}
    for msr in msrs.EMULATED_MSRS:
        assert msr.vendors and not msr.vendors & ~msrs.BOTH
        assert not seen.get(msr.number, 0) & msr.vendors, f"{msr.number:#x} twice for one vendor"
        seen[msr.number] = seen.get(msr.number, msrs.Vendor(0)) | msr.vendors


def test_only_the_record_kinds_have_slots_and_each_its_own():
    slots = [msrs.slot(msr) for msr in msrs.EMULATED_MSRS if msr.kind in msrs.RECORD_KINDS]
    assert sorted(slots) == list(range(0, msrs.RECORD_SIZE, 8))
    assert all(msrs.slot(msr) == msrs.NO_SLOT for msr in msrs.EMULATED_MSRS if msr.kind not in msrs.RECORD_KINDS)
    assert GUEST.offsets["msrs"] + msrs.RECORD_SIZE <= GUEST.size
    assert set(msrs.FIRMWARE) <= {msr.number for msr in msrs.RECORDED}


def test_only_the_backends_kinds_name_guest_state():
    for msr in msrs.EMULATED_MSRS:
        if msr.kind not in BACKEND_KINDS | {msrs.MsrKind.TSC}:
            assert (msr.vmx, msr.svm) == (0, 0), f"{msr.number:#x}"


def test_the_image_holds_the_table_sorted_and_each_guest_its_firmware_values(result):
    image = LoadedImage(result.elf)
    raw = image.read(result.layout.rodata["msr_table"], msrs.TABLE_SIZE)
    assert raw == msrs.table()
    numbers = [struct.unpack_from("<I", raw, offset)[0] for offset in range(0, len(raw), msrs.ENTRY_SIZE)]
    assert numbers == sorted(numbers), "the lookup searches the table by halving it"
    for guest in result.layout.guests:
        record = image.read(guest.record, GUEST.size)
        assert record[GUEST.offsets["msrs"]:GUEST.offsets["msrs"] + msrs.RECORD_SIZE] == msrs.record_reset()


def record_value(number: int) -> int:
    (msr,) = [msr for msr in msrs.RECORDED if msr.number == number]
    return int.from_bytes(msrs.record_reset()[msrs.slot(msr):msrs.slot(msr) + 8], "little")


def types_of(value: int, count: int = 8) -> list[int]:
    return list(value.to_bytes(8, "little")[:count])


def test_the_firmware_mtrrs_describe_a_pc():
    """Default WB with MTRRs and fixed ranges enabled; WB, UC, WP below
    1 MiB; one variable range, UC, over the APICs' window and clear of the
    largest guest's RAM; every type one an MTRR may hold."""
    def_type = record_value(hw.IA32_MTRR_DEF_TYPE)
    assert def_type == hw.MTRR_DEF_TYPE_E | hw.MTRR_DEF_TYPE_FE | hw.MEMORY_TYPE_WB == 0xC06
    assert [types_of(record_value(n)) for n in (0x250, 0x258, 0x259)] == [[6] * 8, [6] * 8, [0] * 8]
    assert all(types_of(record_value(0x268 + n)) == [5] * 8 for n in range(8))
    base, mask = record_value(hw.IA32_MTRR_PHYSBASE0), record_value(hw.IA32_MTRR_PHYSMASK0)
    assert base & hw.MTRR_PHYSBASE_TYPE == hw.MEMORY_TYPE_UC and mask & hw.MTRR_PHYSMASK_VALID
    window_start, window_mask = base & hw.MTRR_ADDRESS, mask & hw.MTRR_ADDRESS
    size = (~window_mask & hw.MTRR_ADDRESS | hw.PAGE_OFFSET_MASK) + 1
    assert (window_start, size) == (0xC0000000, 1 << 30)
    for address in (hw.IOAPIC_BASE, hw.LAPIC_BASE, 0xFFFFFFFF):
        assert address & window_mask == window_start
    assert config.GUEST_MEMORY_MAX <= window_start
    for n in range(1, msrs.MTRR_VARIABLE_RANGES):
        assert record_value(hw.IA32_MTRR_PHYSMASK0 + 2 * n) & hw.MTRR_PHYSMASK_VALID == 0
    for msr in msrs.RECORDED:
        value = record_value(msr.number)
        if msr.kind is not msrs.MsrKind.BITS:             # an MTRR's fixed bits are reserved: 0
            assert value & ~msr.value == 0, f"{msr.number:#x}: firmware sets a reserved bit"
        if msr.kind is msrs.MsrKind.MTRR_FIXED:
            assert set(types_of(value)) <= set(hw.MTRR_VALID_TYPES)
        if msr.kind in (msrs.MsrKind.MTRR_DEF_TYPE, msrs.MsrKind.MTRR_PHYSBASE):
            assert value & 0xFF in hw.MTRR_VALID_TYPES


def test_mtrrcap_matches_the_ranges_emulated():
    (cap,) = [msr for msr in msrs.EMULATED_MSRS if msr.number == hw.IA32_MTRRCAP]
    assert cap.kind is msrs.MsrKind.READ_ONLY
    assert cap.value & hw.MTRRCAP_VCNT == msrs.MTRR_VARIABLE_RANGES
    assert cap.value & hw.MTRRCAP_FIX and cap.value & hw.MTRRCAP_WC
    numbers = {msr.number for msr in msrs.EMULATED_MSRS}
    assert {hw.IA32_MTRR_PHYSBASE0 + n for n in range(2 * msrs.MTRR_VARIABLE_RANGES)} <= numbers
    assert set(msrs.MTRR_FIXED_FIRMWARE) == {0x250, 0x258, 0x259, *range(0x268, 0x270)} <= numbers


def test_the_type_sets_match_the_sdm_encodings():
    assert [t for t in range(256) if hw.MTRR_VALID_TYPE_SET >> t & 1] == [0, 1, 4, 5, 6]
    assert [t for t in range(256) if hw.PAT_VALID_TYPE_SET >> t & 1] == [0, 1, 4, 5, 6, 7]
    assert all(t & hw.MEMORY_TYPE_RESERVED_BITS == 0 for t in hw.PAT_VALID_TYPES)


def test_misc_enable_and_machine_check_are_as_documented():
    assert record_value(hw.IA32_MISC_ENABLE) == 0x1801
    (misc,) = [msr for msr in msrs.EMULATED_MSRS if msr.number == hw.IA32_MISC_ENABLE]
    assert misc.vendors is msrs.Vendor.INTEL and misc.value == 0x9          # bits 0 and 3
    (cap,) = [msr for msr in msrs.EMULATED_MSRS if msr.number == hw.IA32_MCG_CAP]
    assert (cap.kind, cap.value) == (msrs.MsrKind.READ_ONLY, 0)            # no banks, no MCG_CTL
    (status,) = [msr for msr in msrs.EMULATED_MSRS if msr.number == hw.IA32_MCG_STATUS]
    assert (status.kind, status.value) == (msrs.MsrKind.BITS, 0x7)


def keep_mask(leaf: int, register: str, subleaf: int = 0) -> int:
    masks = [masks for rule_leaf, rule_subleaf, masks in cpuid.entries()
             if rule_leaf == leaf and rule_subleaf in (subleaf, cpuid.ANY_SUBLEAF)]
    keep = cpuid.ALL
    for mask in masks:
        keep &= mask[register]
    return keep


def test_cpuid_shows_the_features_whose_msrs_are_emulated_and_hides_the_others():
    numbers = {msr.number for msr in msrs.EMULATED_MSRS}
    leaf1_edx = keep_mask(1, "edx")
    for feature_bit in (7, 12, 14, 16):                       # MCE, MTRR, MCA, PAT
        assert leaf1_edx >> feature_bit & 1
    assert {hw.IA32_MCG_CAP, hw.IA32_MCG_STATUS, hw.IA32_MTRRCAP, hw.IA32_PAT} <= numbers
    assert not keep_mask(1, "ecx") >> 14 & 1                   # xTPR: MISC_ENABLE[23] fixed
    assert not keep_mask(7, "ebx") >> 1 & 1                    # TSC_ADJUST ...
    assert 0x3B not in numbers                                 # ... raises #GP
    assert not keep_mask(hw.CPUID_ADDRESS_SIZES_LEAF, "ebx") >> 1 & 1   # IRPERF
    assert keep_mask(hw.CPUID_ADDRESS_SIZES_LEAF, "eax") == cpuid.ALL   # MAXPHYADDR as the CPU's


def test_the_readme_lists_exactly_the_emulated_msrs():
    text = (PROJECT_ROOT / "README.md").read_text()
    table = text.split("| MSR | name | vendor | reads | writes |")[1].split("\n\n")[0]
    listed: dict[int, set[str]] = {}
    for row in table.splitlines()[2:]:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        vendors = {"both": {"Intel", "AMD"}}.get(cells[2], {cells[2]})
        for item in cells[0].split(", "):
            first, _, last = item.partition("-")
            for number in range(int(first, 16), int(last or first, 16) + 1):
                assert not listed.get(number, set()) & vendors, f"{number:#x} listed twice"
                listed.setdefault(number, set()).update(vendors)
    names = {msrs.Vendor.INTEL: "Intel", msrs.Vendor.AMD: "AMD"}
    emulated: dict[int, set[str]] = {}
    for msr in msrs.EMULATED_MSRS:
        emulated.setdefault(msr.number, set()).update(name for vendor, name in names.items()
                                                      if msr.vendors & vendor)
    assert listed == emulated
    assert "IA32_TSC_ADJUST" in text, "the README says why it is not emulated"
