"""The vCPU state definition (builder/vcpu.py), the emulated MSRs and the
CPUID rules: consistent with each other, and in the image as defined."""

import struct

import pytest
from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from test_image import PAGE, LoadedImage

from builder import build, config, cpuid, hw, msrs, vcpu
from builder.structs import GUEST


@pytest.fixture(scope="module")
def result():
    return build.build(config.load())


def switch_code(result, backend):
    """The disassembled <backend>_vcpu_switch routine, up to its ret."""
    address = result.labels[f"{backend}_vcpu_switch"]
    offset = address - result.layout.text
    code = result.elf[PAGE + offset:PAGE + offset + 2048]
    lines = []
    for instruction in Cs(CS_ARCH_X86, CS_MODE_64).disasm(code, address):
        lines.append(f"{instruction.mnemonic} {instruction.op_str}".strip())
        if instruction.mnemonic == "ret":
            return lines
    raise AssertionError("no ret")


@pytest.mark.parametrize("backend", ["vmx", "svm"])
def test_every_msr_kept_in_the_cpu_is_switched_by_the_hypervisor(backend):
    """An MSR a backend leaves in the CPU (IN_HARDWARE) would leak to the
    next guest unless builder/vcpu.py switches it for that backend."""
    column = {"vmx": 2, "svm": 3}[backend]
    switched = {item.number for item in vcpu.switched(backend) if item.access is vcpu.Access.MSR}
    in_hardware = {entry[0] for entry in msrs.EMULATED_MSRS if entry[column] == msrs.IN_HARDWARE}
    assert in_hardware <= switched
    assert hw.IA32_TSC_AUX in in_hardware


@pytest.mark.parametrize("backend, only_here", [("vmx", {"dr6", "star", "lstar", "cstar", "fmask",
                                                         "kernel_gs_base"}), ("svm", set())])
def test_the_switch_code_saves_and_loads_exactly_the_defined_state(result, backend, only_here):
    code = switch_code(result, backend)
    expected = {item.name for item in vcpu.switched(backend)}
    assert only_here <= expected
    for item in vcpu.switched(backend):
        if item.access is vcpu.Access.DEBUG:
            assert f"mov rax, dr{item.number}" in code and f"mov dr{item.number}, rax" in code
        if item.access is vcpu.Access.CONTROL:
            assert f"mov rax, cr{item.number}" in code and f"mov cr{item.number}, rax" in code
        if item.access is vcpu.Access.MSR:
            assert code.count(f"mov ecx, {item.number:#x}") == 2, item.name      # save and load
    assert code.count(f"call {result.labels['vcpu_fpu_save']:#x}") == 1
    assert code.count(f"call {result.labels['vcpu_fpu_load']:#x}") == 1
    if backend == "svm":
        assert "mov rax, dr6" not in code      # the VMCB holds it


def test_each_guest_record_starts_with_the_reset_state_and_its_own_xsave_area(result):
    image = LoadedImage(result.elf)
    areas = set()
    for guest in result.layout.guests:
        record = image.read(guest.record, GUEST.size)

        def field(name, record=record):
            return struct.unpack_from("<Q", record, GUEST.offsets[name])[0]
        assert field("xcr0") == hw.XCR0_RESET
        assert field("dr6") == hw.DR6_RESET
        assert field("cr2") == field("lstar") == field("tsc_aux") == 0
        area = field("xsave_area")
        assert area == guest.xsave_area and area % hw.XSAVE_ALIGNMENT == 0
        areas.add(area)
        legacy = image.read(area, 32)
        assert struct.unpack_from("<H", legacy, hw.XSAVE_LEGACY_FCW)[0] == hw.FCW_RESET
        assert struct.unpack_from("<I", legacy, hw.XSAVE_LEGACY_MXCSR)[0] == hw.MXCSR_RESET
        assert image.read(area + 512, 64) == bytes(64), "XSAVE header: every component in its initial state"
    assert len(areas) == len(result.layout.guests)


def test_the_cpuid_rules_are_sorted_and_in_the_image(result):
    entries = cpuid.entries()
    assert [(leaf, subleaf) for leaf, subleaf, _ in entries] == sorted((leaf, subleaf)
                                                                       for leaf, subleaf, _ in entries)
    image = LoadedImage(result.elf)
    assert image.read(result.layout.rodata["cpuid_table"], len(cpuid.table())) == cpuid.table()
    leaf1 = next(masks for leaf, _, masks in entries if leaf == 1)
    assert not leaf1["ecx"] & hw.CPUID_1_ECX_VMX and not leaf1["ecx"] & 1 << 3    # VMX, MONITOR hidden
    xsave = next(masks for leaf, subleaf, masks in entries if (leaf, subleaf) == (hw.CPUID_XSAVE_LEAF, 0))
    assert xsave["eax"] == vcpu.GUEST_XFEATURES and xsave["edx"] == 0


def test_the_readme_lists_every_leaf_the_cpuid_rules_change():
    """The guest's view documents the CPUID rules; a rule for a leaf the
    README does not name is a change nobody documented."""
    import re

    from builder.render import PROJECT_ROOT
    table = (PROJECT_ROOT / "README.md").read_text().split("| leaf | hidden |")[1].split("\n\n")[0]
    named = {int(number, 16) for row in table.splitlines()[2:]
             for number in re.findall(r"(?<![\w.])((?:0x)?[0-9A-Fa-f]+)(?=[.,| ])", row.split("|")[1])}
    assert {leaf for leaf, _, _ in cpuid.entries()} <= named


def test_a_vmcs_set_up_resets_what_a_guest_run_leaves_behind():
    """VMCLEAR does not reset a VMCS, and a restart reuses it: the set-up
    tables write the guest's pending debug exceptions, interrupt shadow,
    DEBUGCTL and event injection (found by the fuzzer: a single-step trap
    pending from the last run fired at the restarted guest's entry)."""
    from builder import vmcs
    result = build.build(config.load())
    written = {field for field, _, value in vmcs.common_entries(result.layout, result.labels) if value == 0}
    assert {hw.Vmcs.GUEST_PENDING_DBG_EXCEPTIONS, hw.Vmcs.GUEST_INTERRUPTIBILITY_INFO,
            hw.Vmcs.GUEST_IA32_DEBUGCTL, hw.Vmcs.VM_ENTRY_INTR_INFO_FIELD} <= written
