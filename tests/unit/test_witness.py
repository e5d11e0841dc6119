"""The witness builtin's parameters (builder/guest_images.py WITNESS_*) and
image, checked without an emulator; tests/boot/test_hostile.py boots it."""

import pytest
from harness import guest_table, write_config

from builder import build, config, guest_images, hw
from builder.guest_images import WITNESS_PAT, WITNESS_STATE, witness_constants


def test_the_state_buffer_holds_the_planted_items_in_order():
    constants = witness_constants(0x10000)
    offset = 0
    for name, dwords in WITNESS_STATE:
        assert constants[f"WITNESS_OFFSET_{name.upper()}"] == offset
        offset += 4 * dwords
    assert constants["WITNESS_STATE_BYTES"] == offset
    # The LCG fills everything before the MSRs: XMM0-XMM7, DR0-DR3.
    assert constants["WITNESS_RANDOM_DWORDS"] * 4 == constants["WITNESS_OFFSET_SYSENTER_ESP"]
    assert [name for name, _ in WITNESS_STATE][-3:] == ["sysenter_esp", "tsc_aux", "pat"]


def test_the_planted_pat_is_valid_and_differs_from_the_power_on_pat():
    assert all(entry in hw.PAT_VALID_TYPES for entry in WITNESS_PAT.to_bytes(hw.PAT_ENTRIES, "little"))
    assert WITNESS_PAT != hw.PAT_POWER_ON


@pytest.mark.parametrize("memory", ["64K", "1M"])
def test_the_pattern_lies_between_the_witness_image_and_its_stack(tmp_path, memory):
    guest = config.load(write_config(tmp_path, guest_table("witness", memory, builtin="witness")))
    result = build.build(guest)
    (segment,) = result.images[0].segments
    image_end = segment.address + len(segment.data)
    top = result.layout.guests[0].usable_top
    pattern_end = witness_constants(top)["WITNESS_PATTERN_END"]
    assert image_end % 4 == 0, "the pattern starts at the image's end, a dword at a time"
    assert image_end < pattern_end == top - guest_images.WITNESS_STACK_SIZE
    assert pattern_end % 4 == 0
