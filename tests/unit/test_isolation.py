"""The isolation check (builder/isolation.py): good images pass with every
guest's EPT and NPT walked; `build()` refuses deliberately broken ones with
a line naming the guest, the guest-physical and host-physical address and
whose frame it is, and `hvbuild` then writes nothing."""

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from builder import build, cli, config, elf, hw, isolation, paging, svm, vmcs
from builder.errors import BuildError

PAGE = hw.PAGE_SIZE
THREE_GUESTS = """
[hypervisor]
backend = "{backend}"
[[guest]]
name = "alpha"
memory = "256K"
builtin = "heartbeat"
[[guest]]
name = "beta"
memory = "3M"
builtin = "scanner"
[[guest]]
name = "gamma"
memory = "64K"
builtin = "prober"
"""
FAR_AWAY = 0x80000000            # 2 GiB: above every image of these tests


def write_config(directory, backend):
    path = directory / "hv.toml"
    path.write_text(THREE_GUESTS.format(backend=backend))
    return path


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The layouts of the unbroken builds, by backend: a broken build lays
    memory out the same way, so its corruptions are aimed with these."""
    return {backend: build.build(config.load(write_config(tmp_path_factory.mktemp(backend), backend)))
            for backend in ("auto", "vmx", "svm")}


def expected_roots(layout):
    roots = {}
    for guest in layout.guests:
        if guest.ept is not None:
            roots[guest.name, "EPT"] = guest.ept.pml4
        if guest.npt is not None:
            roots[guest.name, "NPT"] = guest.npt.pml4
    return roots


def test_the_default_config_passes_with_both_tables_of_both_guests_walked():
    result = build.build(config.load())
    proofs = isolation.check(result.elf, result.layout, result.config.source)
    assert {(p.guest, p.kind): p.root for p in proofs} == expected_roots(result.layout)
    assert {(p.guest, p.kind) for p in proofs} == {(g, k) for g in ("alpha", "beta") for k in ("EPT", "NPT")}
    assert all(p.tables == 4 for p in proofs), "PML4, PDPT, PD and one PT for 256K"


@pytest.mark.parametrize("backend, kinds", [("auto", {"EPT", "NPT"}), ("vmx", {"EPT"}), ("svm", {"NPT"})])
def test_three_guests_pass_on_each_backend(clean, backend, kinds):
    result = clean[backend]
    proofs = isolation.check(result.elf, result.layout, result.config.source)
    assert {(p.guest, p.kind): p.root for p in proofs} == expected_roots(result.layout)
    assert {p.kind for p in proofs} == kinds and len(proofs) == 3 * len(kinds)
    assert {p.guest: p.tables for p in proofs} == {"alpha": 4, "beta": 5, "gamma": 4}


@dataclass(frozen=True)
class Case:
    """A broken build: `change(guest, nested, tables)` corrupts guest
    `name`'s `kind` tables ("ept" or "npt"); `message` is part of the refusal."""

    name: str
    kind: str
    change: Callable
    message: str


def corrupt(monkeypatch, case):
    """Make paging.nested_tables apply `case.change` to the tables it
    returns for the case's guest and kind, before build() places them."""
    original = paging.nested_tables

    def nested_tables(guest, nested, directory, leaf):
        tables = original(guest, nested, directory, leaf)
        if guest.name == case.name and nested is getattr(guest, case.kind):
            case.change(guest, nested, tables)
        return tables

    monkeypatch.setattr(paging, "nested_tables", nested_tables)


def put(table, index, value):
    table[8 * index:8 * index + 8] = value.to_bytes(8, "little")


def guest(layout, name):
    return next(g for g in layout.guests if g.name == name)


def directory_bits(kind):
    return paging.EPT_DIRECTORY if kind == "ept" else paging.NPT_DIRECTORY


def leaf_bits(kind):
    return paging.EPT_LEAF if kind == "ept" else paging.NPT_LEAF


def into_other_guest(layout):
    alpha = guest(layout, "alpha").memory_base + 0x3000
    return Case("beta", "ept", lambda g, n, t: put(t[n.pts[0]], 3, alpha | leaf_bits("ept")),
                f"guest beta (EPT) maps guest-physical 0x3000 to host-physical {alpha:#x}: "
                "a page of guest alpha's memory")


def onto_a_paging_structure(layout):
    pd = guest(layout, "alpha").npt.pd
    return Case("gamma", "npt", lambda g, n, t: put(t[n.pts[0]], 1, pd | leaf_bits("npt")),
                f"guest gamma (NPT) maps guest-physical 0x1000 to host-physical {pd:#x}: "
                "a paging-structure page (guest alpha's NPT PD)")


def onto_its_own_root(layout):
    pml4 = guest(layout, "gamma").ept.pml4
    return Case("gamma", "ept", lambda g, n, t: put(t[n.pts[0]], 15, pml4 | leaf_bits("ept")),
                f"guest gamma (EPT) maps guest-physical 0xf000 to host-physical {pml4:#x}: "
                "a paging-structure page (guest gamma's EPT PML4)")


def into_hypervisor_text(layout):
    text = layout.text + PAGE
    return Case("alpha", "ept", lambda g, n, t: put(t[n.pts[0]], 0, text | leaf_bits("ept")),
                f"guest alpha (EPT) maps guest-physical 0x0 to host-physical {text:#x}: "
                f"a page of the hypervisor (its r-x segment at {layout.text:#x})")


def past_the_memory(layout):
    gamma = guest(layout, "gamma")
    end = gamma.memory_base + gamma.memory_size
    return Case("gamma", "npt", lambda g, n, t: put(t[n.pts[0]], 16, end | leaf_bits("npt")),
                f"guest gamma (NPT) maps guest-physical 0x10000 to host-physical {end:#x}: past the "
                "0x10000 bytes of memory the config gave it; the frame is memory no guest was given")


def past_the_memory_into_the_next_guest(layout):
    alpha = guest(layout, "alpha")
    end = alpha.memory_base + alpha.memory_size
    return Case("alpha", "ept", lambda g, n, t: put(t[n.pts[0]], 64, end | leaf_bits("ept")),
                f"guest alpha (EPT) maps guest-physical 0x40000 to host-physical {end:#x}: past the "
                "0x40000 bytes of memory the config gave it; the frame is a page of guest beta's memory")


def a_missing_page(layout):
    beta = guest(layout, "beta").memory_base + 0x205000
    return Case("beta", "ept", lambda g, n, t: put(t[n.pts[1]], 5, 0),
                f"guest beta (EPT) does not map guest-physical 0x205000 (host-physical {beta:#x}): "
                "the config gives it [0, 0x300000)")


def a_table_in_the_guests_own_memory(layout):
    """beta's second PT moved to guest-physical 1M of beta's own memory: every
    page maps where it should, but beta could rewrite its own EPT."""
    beta = guest(layout, "beta")
    moved = beta.memory_base + 0x100000

    def change(g, n, t):
        t[moved] = t.pop(n.pts[1])
        put(t[n.pd], 1, moved | directory_bits("ept"))

    return Case("beta", "ept", change,
                f"guest beta (EPT) maps guest-physical 0x100000 to host-physical {moved:#x}: "
                "a paging-structure page (guest beta's EPT PT)")


def a_reserved_bit_in_a_pml4_entry(kind):
    """Bit 7 of a PML4 entry is no page size: reserved in EPT and NPT alike."""
    def case(layout):
        nested = getattr(guest(layout, "gamma"), kind)
        entry = nested.pdpt | directory_bits(kind) | hw.PTE_LARGE
        problem = "reserved bits 7:3 set" if kind == "ept" else "reserved bit 7 set in a PML4 entry"
        return Case("gamma", kind, lambda g, n, t: put(t[n.pml4], 0, entry),
                    f"guest gamma ({kind.upper()}) PML4 entry for guest-physical 0x0 ({entry:#x} at "
                    f"host-physical {nested.pml4:#x}): {problem}")
    case.__name__ = f"a_reserved_bit_in_a_pml4_entry_{kind}"
    return case


def a_dangling_table_pointer(layout):
    return Case("beta", "npt", lambda g, n, t: put(t[n.pd], 1, FAR_AWAY | directory_bits("npt")),
                f"guest beta (NPT) PD entry for guest-physical 0x200000 points to host-physical "
                f"{FAR_AWAY:#x}, which the image does not load: a dangling table pointer")


def a_loop(layout):
    pml4 = guest(layout, "alpha").ept.pml4
    return Case("alpha", "ept", lambda g, n, t: put(t[n.pdpt], 1, pml4 | directory_bits("ept")),
                f"guest alpha (EPT) PDPT entry for guest-physical 0x40000000 points to host-physical "
                f"{pml4:#x}, already reached as guest alpha's EPT PML4: a loop or a shared table")


def a_large_page_over_the_hypervisor(layout):
    """A 2 MiB leaf in the PD in place of the page table: it maps all of
    host-physical [0, 2 MiB), where the hypervisor lives (below every guest)."""
    return Case("alpha", "npt", lambda g, n, t: put(t[n.pd], 0, 0 | leaf_bits("npt") | hw.PTE_LARGE),
                "guest alpha (NPT) maps guest-physical 0x0 to host-physical 0x0: a page of the hypervisor")


def a_large_page_with_reserved_bits(layout):
    address = layout.text | leaf_bits("ept") | hw.PTE_LARGE
    return Case("gamma", "ept", lambda g, n, t: put(t[n.pd], 0, address),
                f"guest gamma (EPT) PD entry for guest-physical 0x0 ({address:#x} at host-physical "
                f"{guest(layout, 'gamma').ept.pd:#x}): a 2 MiB page with reserved address bits set")


def an_uncacheable_kind_of_memory(layout):
    alpha = guest(layout, "alpha")
    write_combining = 1 << hw.EPT_MEMTYPE_SHIFT | hw.EPT_RWX
    entry = alpha.memory_base + 0x2000 | write_combining
    return Case("alpha", "ept", lambda g, n, t: put(t[n.pts[0]], 2, entry),
                "memory type 1 (only UC 0 and WB 6 are allowed)")


def write_without_read(layout):
    alpha = guest(layout, "alpha")
    entry = alpha.memory_base + 0x2000 | hw.EPT_WRITE | hw.EPT_MEMTYPE_WB << hw.EPT_MEMTYPE_SHIFT
    return Case("alpha", "ept", lambda g, n, t: put(t[n.pts[0]], 2, entry),
                f"guest alpha (EPT) PT entry for guest-physical 0x2000 ({entry:#x} at host-physical "
                f"{alpha.ept.pts[0] + 16:#x}): write or execute without read")


@pytest.mark.parametrize("backend, case", [
    ("vmx", into_other_guest), ("svm", onto_a_paging_structure), ("auto", onto_its_own_root),
    ("auto", into_hypervisor_text), ("svm", past_the_memory), ("vmx", past_the_memory_into_the_next_guest),
    ("vmx", a_missing_page), ("vmx", a_table_in_the_guests_own_memory), ("auto", a_dangling_table_pointer), ("vmx", a_loop),
    ("svm", a_large_page_over_the_hypervisor), ("vmx", a_large_page_with_reserved_bits),
    ("vmx", an_uncacheable_kind_of_memory), ("auto", write_without_read),
    ("auto", a_reserved_bit_in_a_pml4_entry("ept")), ("auto", a_reserved_bit_in_a_pml4_entry("npt")),
])
def test_build_refuses_a_broken_layout(clean, tmp_path, monkeypatch, backend, case):
    broken = case(clean[backend].layout)
    corrupt(monkeypatch, broken)
    path = write_config(tmp_path, backend)
    with pytest.raises(BuildError) as refused:
        build.build(config.load(path))
    assert refused.value.where == str(path)
    assert "\n" not in refused.value.message
    assert refused.value.message.startswith(f"isolation check failed: guest {broken.name} "
                                            f"({broken.kind.upper()})")
    assert broken.message in refused.value.message


def test_build_refuses_a_vmcb_without_nested_paging(tmp_path, monkeypatch):
    original = svm.vmcb

    def vmcb(layout, guest, image):
        data = bytearray(original(layout, guest, image))
        if guest.name == "beta":
            data[hw.Vmcb.NP_CONTROL] &= ~hw.SVM_NP_ENABLE
        return bytes(data)

    monkeypatch.setattr(svm, "vmcb", vmcb)
    with pytest.raises(BuildError, match=r"guest beta \(NPT\): its VMCB at 0x[0-9a-f]+ does not enable "
                                         "nested paging"):
        build.build(config.load(write_config(tmp_path, "svm")))


def on_field(field, change):
    """A set-up entry rewriter: `change(adjust, value)` for `field`'s entry."""
    return lambda f, adjust, value: (f, *change(adjust, value)) if f == field else (f, adjust, value)


@pytest.mark.parametrize("table, rewrite, message", [
    ("guest_entries", on_field(hw.Vmcs.EPT_POINTER, lambda a, eptp: (a, eptp + (1 << 3))),  # 5 levels
     "guest gamma (EPT): EPT pointer 0x{eptp:x} is not a 4-level walk of memory type UC or WB"),
    ("guest_entries", on_field(hw.Vmcs.EPT_POINTER, lambda a, eptp: (vmcs.Adjust.PROC_BASED, eptp)),
     "guest gamma (EPT): its EPT_POINTER is adjusted to the CPU (kind 2), so the image does not fix it"),
    ("guest_entries", lambda f, a, v: (hw.Vmcs.VIRTUAL_PROCESSOR_ID, a, 3) if f == hw.Vmcs.EPT_POINTER
     else (f, a, v), "guest gamma (EPT): no EPT_POINTER in its VMCS set-up table at 0x{vmcs_init:x}"),
    ("common_entries", on_field(hw.Vmcs.SECONDARY_VM_EXEC_CONTROL, lambda a, c: (a, c & ~hw.PROC2_ENABLE_EPT)),
     ("guest alpha (EPT): the VMCS set-up tables do not enable EPT: the guest would reach host-physical "
      "memory directly")),
], ids=["a 5-level EPT pointer", "an adjusted EPT pointer", "no EPT pointer", "EPT off"])
def test_build_refuses_a_vmcs_that_does_not_confine_the_guest(clean, tmp_path, monkeypatch, table, rewrite,
                                                              message):
    """`rewrite` changes the common set-up table (every guest's; alpha is
    checked first) or gamma's own, which is written after it and wins."""
    original = getattr(vmcs, table)

    def entries(where, *args):
        if table == "guest_entries" and where.name != "gamma":
            return original(where, *args)
        return [rewrite(*entry) for entry in original(where, *args)]

    monkeypatch.setattr(vmcs, table, entries)
    with pytest.raises(BuildError) as refused:
        build.build(config.load(write_config(tmp_path, "vmx")))
    gamma = guest(clean["vmx"].layout, "gamma")
    expected = message.format(eptp=gamma.ept.ept_pointer + (1 << 3), vmcs_init=gamma.vmcs_init)
    assert refused.value.message == "isolation check failed: " + expected


def test_overlapping_guest_memories_are_refused(clean):
    """Disjoint memories are what makes "each guest maps only its own" mean
    "no frame is reachable by two guests"."""
    result = clean["svm"]
    alpha, beta, gamma = result.layout.guests
    overlapping = replace(result.layout, guests=(alpha, replace(beta, memory_base=alpha.memory_base + PAGE),
                                                 gamma))
    with pytest.raises(BuildError, match=f"guest beta's memory at {alpha.memory_base + PAGE:#x} "
                                         "overlaps guest alpha's"):
        isolation.check(result.elf, overlapping, result.config.source)


def test_a_vmcb_the_image_does_not_load_is_refused(clean):
    result = clean["svm"]
    alpha, beta, gamma = result.layout.guests
    lost = replace(result.layout, guests=(alpha, replace(beta, vmcb=FAR_AWAY), gamma))
    with pytest.raises(BuildError, match=rf"guest beta \(NPT\): its VMCB at {FAR_AWAY:#x} is not in the image"):
        isolation.check(result.elf, lost, result.config.source)


def test_hvbuild_says_one_line_exits_2_and_writes_nothing(clean, tmp_path, monkeypatch, capsys):
    broken = into_other_guest(clean["vmx"].layout)
    corrupt(monkeypatch, broken)
    out = tmp_path / "out"
    status = cli.hvbuild([str(write_config(tmp_path, "vmx")), "-o", str(out), "--no-iso"])
    captured = capsys.readouterr()
    assert status == cli.EXIT_USER_ERROR == 2
    assert captured.err.count("\n") == 1 and captured.out == ""
    assert captured.err.startswith(f"hvbuild: error: {tmp_path / 'hv.toml'}: isolation check failed: "
                                   "guest beta (EPT)")
    assert broken.message in captured.err
    assert not out.exists() or not any(out.iterdir())


def synthetic_memory(tables):
    """An image of nothing but `tables` ({address: {index: entry}}), read
    back like a real one."""
    segments = []
    for address, entries in sorted(tables.items()):
        page = bytearray(PAGE)
        for index, entry in entries.items():
            put(page, index, entry)
        segments.append(elf.LoadSegment(address, bytes(page), PAGE, elf.PF_R))
    return isolation.PhysicalMemory.from_elf(elf.write_elf(segments, 0, (segments[0].address, 0), {}))


@pytest.mark.parametrize("fmt, directory, leaf", [
    (isolation.EPT, paging.EPT_DIRECTORY, paging.EPT_LEAF),
    (isolation.NPT, paging.NPT_DIRECTORY, paging.NPT_LEAF),
], ids=["EPT", "NPT"])
def test_large_pages_map_their_whole_range_and_bit_7_of_a_pt_entry_is_no_page_size(fmt, directory, leaf):
    pml4, pdpt, pd, pt = 0x100000, 0x101000, 0x102000, 0x103000
    gib = 1 << 30
    memory = synthetic_memory({
        pml4: {0: pdpt | directory},
        pdpt: {0: pd | directory, 1: gib | leaf | hw.PTE_LARGE},              # 1 GiB page
        pd: {0: pt | directory, 3: 0x400000 | leaf | hw.PTE_LARGE},           # 2 MiB page
        pt: {0: 0x200000 | leaf, 1: 0x201000 | leaf, 5: 0x300000 | leaf | hw.PTE_LARGE},
    })
    walk = isolation.Walk(memory, fmt, "t", {})
    walk.table(pml4, 4, 0, "its root")
    assert walk.mappings == [isolation.Mapping(0, 0x200000, 2 * PAGE),
                             isolation.Mapping(5 * PAGE, 0x300000, PAGE),
                             isolation.Mapping(0x600000, 0x400000, 0x200000),
                             isolation.Mapping(gib, gib, gib)]
    assert walk.tables == 4
