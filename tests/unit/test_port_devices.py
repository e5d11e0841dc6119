"""The guest's PC devices as the builder decides them, no emulator: the
port map (builder/devices.py), each guest's CMOS image and the calendar
facts the RTC's date conversion rests on (builder/cmos.py), the fw_cfg
items (builder/fw_cfg.py), and where they land in the guest's record."""

import datetime

import pytest

from builder import cmos, config, devices, fw_cfg, hw, tables
from builder.build import asm_constants, build
from builder.structs import GUEST

KIB, MIB = 1024, 1024 * 1024


def claimant(port):
    return next((d.name for d in devices.PORT_DEVICES if d.first <= port <= d.last), None)


def test_each_device_claims_its_ports_and_their_neighbours_stay_free():
    devices.check()
    assert [claimant(port) for port in (0x70, 0x71, 0x510, 0x511, 0x60, 0x64, 0x92, 0xCF9)] == [
        "rtc", "rtc", "fw_cfg", "fw_cfg", "i8042_data", "i8042_command", "system_control_a",
        "reset_control"]
    assert [claimant(port) for port in (0x20, 0xA1, 0x43, 0x61, 0x4D1)] == [
        "pic_master", "pic_slave", "pit", "port_b", "elcr"]
    # Neighbours a device must not take: the 8042's unused 0x62-0x63, the
    # RTC's aliases, fw_cfg's DMA address, the PCI configuration address and
    # data.
    assert [claimant(port) for port in (0x62, 0x63, 0x72, 0x512, 0x514, 0xCF8, 0xCFC)] == [None] * 7


@pytest.mark.parametrize("memory, base, extended, above_16m", [
    (64 * KIB, 64, 0, 0),
    (640 * KIB, 640, 0, 0),
    (MIB, 640, 0, 0),
    (4 * MIB, 640, 3 * 1024, 0),
    (20 * MIB, 640, 19 * 1024, 64),
    (64 * MIB, 640, 63 * 1024, 768),
    (128 * MIB, 640, 0xFFFF, 1792),        # 127 MiB above 1 MiB do not fit 16 bits of KiB
    (1024 * MIB, 640, 0xFFFF, 16128),
])
def test_the_cmos_image_tells_the_guests_memory_as_the_pc_at_map_does(memory, base, extended, above_16m):
    ram = cmos.image(memory)
    assert len(ram) == 128

    def word(at):
        return ram[at] | ram[at + 1] << 8

    assert word(0x15) == base
    assert word(0x17) == extended and word(0x30) == extended
    assert word(0x34) == above_16m
    assert ram[0x5B:0x5E] == bytes(3)
    assert ram[0x14] == 0x02                        # a coprocessor, no diskette, EGA/VGA
    assert ram[0x0A] == 0x26 and ram[0x0B] == 0x02  # 32.768 kHz, 1024 Hz; BCD, 24-hour
    assert ram[0x2E] << 8 | ram[0x2F] == sum(ram[0x10:0x2E])
    assert ram[0x2E:0x30] != bytes(2)


def test_the_registers_are_time_fields_the_four_control_registers_or_memory():
    kinds = cmos.REGISTER_KINDS
    assert len(kinds) == 128
    fields = {register: kinds[register] for register in (0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32)}
    assert fields == {0x00: 0, 0x02: 1, 0x04: 2, 0x06: 3, 0x07: 4, 0x08: 5, 0x09: 6, 0x32: 7}
    assert [kinds[r] for r in (0x0A, 0x0B, 0x0C, 0x0D)] == [cmos.Kind.REGISTER_A, cmos.Kind.REGISTER_B,
                                                             cmos.Kind.REGISTER_C, cmos.Kind.REGISTER_D]
    assert [kinds[r] for r in (0x01, 0x03, 0x05, 0x0E, 0x31, 0x33, 0x7F)] == [cmos.Kind.RAM] * 7
    constants = cmos.asm_constants()
    assert constants["RTC_FIELD_HOURS"] == 2 and constants["RTC_FIELD_CENTURY"] == 7


def test_the_calendar_constants_agree_with_pythons_calendar():
    # Day 0 is 0400-03-01 BC (-0400): 2000 years, five eras, before 1600-03-01.
    since_1600 = (datetime.date(1970, 1, 1) - datetime.date(1600, 3, 1)).days
    assert cmos.EPOCH_DAY == 5 * cmos.DAYS_PER_ERA + since_1600
    assert cmos.EPOCH_DAY == 865565
    assert cmos.DAYS_PER_ERA % 7 == 0
    assert cmos.WEEKDAY_OF_DAY_0 == datetime.date(1600, 3, 1).isoweekday() % 7
    assert (cmos.DAYS_PER_ERA, cmos.DAYS_PER_CENTURY, cmos.DAYS_PER_4_YEARS) == (146097, 36524, 1461)
    months = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 1, 2]
    assert cmos.MARCH_MONTH_STARTS == tuple(
        (datetime.date(2023 + (m < 3), m, 1) - datetime.date(2023, 3, 1)).days for m in months)


def days_to_date(day):
    """hv/devices/rtc.s.j2 rtc_fields_from_seconds, step by step: day 0 is
    -0400-03-01; eras, centuries (the era's last day is a leap day), 4-year
    cycles, years (the cycle's last day is one), months from March."""
    era, day = divmod(day, cmos.DAYS_PER_ERA)
    century, day = divmod(day, cmos.DAYS_PER_CENTURY)
    if century == cmos.CENTURIES_PER_ERA:
        century, day = century - 1, day + cmos.DAYS_PER_CENTURY
    cycle, day = divmod(day, cmos.DAYS_PER_4_YEARS)
    year, day = divmod(day, cmos.DAYS_PER_YEAR)
    if year == cmos.YEARS_PER_LEAP_CYCLE:
        year, day = year - 1, day + cmos.DAYS_PER_YEAR
    year += era * 400 + century * 100 + cycle * 4
    month = max(i for i, start in enumerate(cmos.MARCH_MONTH_STARTS) if start <= day)
    day_of_month = day - cmos.MARCH_MONTH_STARTS[month] + 1
    month += cmos.MONTH_MARCH
    if month > cmos.MONTHS_PER_YEAR:
        month, year = month - cmos.MONTHS_PER_YEAR, year + 1
    return year - cmos.YEAR_BIAS, month, day_of_month


def date_to_days(year, month, day):
    """rtc_seconds_from_fields, step by step (months and days out of range carry)."""
    months = (year + cmos.YEAR_BIAS) * cmos.MONTHS_PER_YEAR + month - cmos.MONTH_MARCH
    march_year, month_index = divmod(months, cmos.MONTHS_PER_YEAR)
    leap_days = march_year // 4 - march_year // 100 + march_year // 400
    return (march_year * cmos.DAYS_PER_YEAR + leap_days + cmos.MARCH_MONTH_STARTS[month_index] + day - 1)


def test_the_rtcs_day_counting_matches_pythons_calendar_every_day_from_1600_to_2400():
    """The assembly's conversion is checked on a few dates by the boot tests
    (tests/boot/test_devices.py); its steps, and the constants it takes,
    on every day here."""
    first, last = datetime.date(1600, 1, 1), datetime.date(2400, 12, 31)
    for ordinal in range(first.toordinal(), last.toordinal() + 1):
        date = datetime.date.fromordinal(ordinal)
        day = cmos.EPOCH_DAY + (date - datetime.date(1970, 1, 1)).days
        assert days_to_date(day) == (date.year, date.month, date.day), date
        assert date_to_days(date.year, date.month, date.day) == day, date
        assert (day + cmos.WEEKDAY_OF_DAY_0) % 7 == date.isoweekday() % 7, date
    assert date_to_days(2100, 2, 29) == date_to_days(2100, 3, 1)          # carries
    assert date_to_days(2024, 13, 1) == date_to_days(2025, 1, 1)
    assert date_to_days(2024, 3, 0) == date_to_days(2024, 2, 29)
    assert date_to_days(0, 0, 0) > 0                                        # the earliest a guest can write


def test_the_fw_cfg_items_of_a_guest():
    data = fw_cfg.data(6 * MIB)
    assert len(data) == fw_cfg.DATA_SIZE == GUEST.offsets["fw_cfg_selector"] - GUEST.offsets["fw_cfg_items"]
    items = {entry.selector: data[entry.offset:entry.offset + entry.length] for entry in fw_cfg.DIRECTORY}
    assert items == {0x0000: b"QEMU", 0x0001: (1).to_bytes(4, "little"),
                     0x0003: (6 * MIB).to_bytes(8, "little"), 0x0005: b"\x01\x00", 0x000F: b"\x01\x00",
                     0x0019: b"\x00\x00\x00\x00"}
    assert fw_cfg.asm_constants()["FW_CFG_ENTRIES"] == 6


def test_a_guests_record_holds_its_devices_power_on_state(tmp_path):
    path = tmp_path / "hv.toml"
    path.write_text('[[guest]]\nname = "a"\nmemory = "20M"\nbuiltin = "heartbeat"\n')
    result = build(config.load(path))
    guest = result.layout.guests[0]
    record = tables.guest_record(result.layout, guest, 0)
    at = GUEST.offsets
    assert record[at["cmos"]:at["cmos"] + 128] == cmos.image(20 * MIB)
    assert record[at["fw_cfg_items"]:at["fw_cfg_items"] + fw_cfg.DATA_SIZE] == fw_cfg.data(20 * MIB)
    assert record[at["i8042_command_byte"]] == hw.I8042_CTR_SYS | hw.I8042_CTR_XLATE
    assert record[at["system_control_a"]] == hw.SYSTEM_CONTROL_A_A20
    assert record[at["rtc_offset"]:at["rtc_offset"] + 8] == bytes(8)
    # What a restart keeps is one run of whole quadwords: the clock and the CMOS.
    constants = asm_constants(config.load(path), result.layout)
    assert constants["GUEST_BATTERY_BACKED_SIZE"] == 4 * 8 + 128
    assert at["rtc_offset"] % 8 == 0
    kept = ["rtc_offset", "rtc_frozen", "rtc_update_second", "rtc_weekday_shift", "cmos"]
    assert [name for name in at if at["rtc_offset"] <= at[name] < at["rtc_offset"] + 160] == kept
