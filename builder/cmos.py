"""The guest's MC146818A real-time clock and CMOS memory: what the builder
decides about it (hv/devices/rtc.s.j2 runs it).

Each guest gets the 128 bytes of a PC/AT's CMOS as a power-on image in its
record (`image`): register A and B as a BIOS leaves them, the memory-size
bytes for the guest's memory, the equipment byte and the checksum.  The
time and calendar registers are not stored there: the hypervisor computes
them from the real clock it read at boot, the TSC and the guest's own
offset.  `REGISTER_KINDS` tells the assembly what each of the 128
registers is; the calendar constants below are the facts its date
conversion rests on, derived here from Python's proleptic Gregorian
calendar rather than typed in.
"""

from __future__ import annotations

import datetime
import enum

from builder import hw

# The time and calendar registers, in the order the hypervisor packs one
# reading of them into a quadword (a byte each, binary, hour 0-23).
TIME_FIELDS = (hw.RTC_SECONDS, hw.RTC_MINUTES, hw.RTC_HOURS, hw.RTC_DAY_OF_WEEK,
               hw.RTC_DAY_OF_MONTH, hw.RTC_MONTH, hw.RTC_YEAR, hw.CMOS_CENTURY)


class Kind(enum.IntEnum):
    """What a register is, for the assembly (a time field is its byte
    index in the packed reading: 0-7)."""

    RAM = len(TIME_FIELDS)      # stored as written: alarms and the CMOS memory
    REGISTER_A = RAM + 1
    REGISTER_B = RAM + 2
    REGISTER_C = RAM + 3
    REGISTER_D = RAM + 4


def register_kind(register: int) -> int:
    if register in TIME_FIELDS:
        return TIME_FIELDS.index(register)
    return {hw.RTC_REGISTER_A: Kind.REGISTER_A, hw.RTC_REGISTER_B: Kind.REGISTER_B,
            hw.RTC_REGISTER_C: Kind.REGISTER_C, hw.RTC_REGISTER_D: Kind.REGISTER_D}.get(register, Kind.RAM)


REGISTER_KINDS = tuple(int(register_kind(register)) for register in range(hw.CMOS_SIZE))


def periodic_period(rate_select: int) -> int:
    """The periodic interrupt's period in 32.768 kHz time-base clocks for
    register A's RS3-RS0 (MC146818A Table 5, "Periodic Interrupt Rate and
    Square-Wave Output Frequency"): none for 0; RS 3-15 tap the divider
    at 2^(RS-1) clocks (8192 Hz ... 2 Hz); RS 1 and 2 give 256 and 128 Hz
    with this time base, as RS 8 and 9 do."""
    if rate_select == 0:
        return 0
    if rate_select < 3:
        return periodic_period(rate_select + 7)
    return 1 << (rate_select - 1)


# Indexed by RS3-RS0 (hv/devices/rtc.s.j2 rtc_periodic_periods).
PERIODIC_PERIODS = tuple(periodic_period(rs) for rs in range(hw.RTC_A_RATE_SELECT + 1))
# Register C's flags and register B's enables share their bit positions,
# so IRQF is (C & B) & sources (MC146818A "Register C").
assert hw.RTC_C_SOURCES == hw.RTC_B_INTERRUPT_ENABLES

# --- the calendar --------------------------------------------------------
# The hypervisor counts days from March 1 of the year -400 (proleptic
# Gregorian), so that every date a guest can set is a positive count and
# every year starts with March: the leap day is the last day of its year.
YEAR_BIAS = 400                       # calendar year + YEAR_BIAS = the year counted from day 0
MONTHS_PER_YEAR = 12
MONTH_MARCH = 3
SECONDS_PER_MINUTE = 60
SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86400
DAYS_PER_WEEK = 7
DAYS_PER_ERA = (datetime.date(2400, 3, 1) - datetime.date(2000, 3, 1)).days      # 400 years
DAYS_PER_CENTURY = (datetime.date(2100, 3, 1) - datetime.date(2000, 3, 1)).days  # without a leap 00
DAYS_PER_4_YEARS = (datetime.date(2005, 3, 1) - datetime.date(2001, 3, 1)).days  # 4 years, one leap day
DAYS_PER_YEAR = (datetime.date(2002, 3, 1) - datetime.date(2001, 3, 1)).days
CENTURIES_PER_ERA = 4
YEARS_PER_LEAP_CYCLE = 4
YEARS_PER_CENTURY = 100
# Day 0 is -0400-03-01; 800 years later is 0400-03-01, and eras are whole weeks.
EPOCH_DAY = (datetime.date(1970, 1, 1) - datetime.date(YEAR_BIAS, MONTH_MARCH, 1)).days + 2 * DAYS_PER_ERA
EPOCH_SECONDS = EPOCH_DAY * SECONDS_PER_DAY
WEEKDAY_OF_DAY_0 = datetime.date(YEAR_BIAS, MONTH_MARCH, 1).isoweekday() % DAYS_PER_WEEK   # Sunday = 0
# A firmware that keeps no century byte (0): the year's two digits decide.
CENTURY_PIVOT_YEAR = 70
CENTURY_BEFORE_PIVOT = 20
CENTURY_FROM_PIVOT = 19
# Days from March 1 to the first of each month, March first.
MARCH_MONTH_STARTS = tuple(
    (datetime.date(2001 + (month < MONTH_MARCH), month, 1) - datetime.date(2001, MONTH_MARCH, 1)).days
    for month in (*range(MONTH_MARCH, MONTHS_PER_YEAR + 1), *range(1, MONTH_MARCH)))


def image(memory_size: int) -> bytes:
    """The guest's 128 CMOS bytes at power-on (PC/AT CMOS map)."""
    ram = bytearray(hw.CMOS_SIZE)
    ram[hw.RTC_REGISTER_A] = hw.RTC_A_POWER_ON
    ram[hw.RTC_REGISTER_B] = hw.RTC_B_POWER_ON
    ram[hw.CMOS_EQUIPMENT] = hw.CMOS_EQUIPMENT_MATH_COPROCESSOR
    kib = memory_size // 1024
    extended = min(max(0, memory_size - hw.CMOS_EXTENDED_MEMORY_START) // 1024,
                   hw.CMOS_EXTENDED_MEMORY_MAX_KIB)
    above_16m = min(max(0, memory_size - hw.CMOS_MEMORY_16M) // hw.CMOS_MEMORY_ABOVE_16M_UNIT,
                    hw.CMOS_MEMORY_ABOVE_16M_MAX)
    for register, value, size in ((hw.CMOS_BASE_MEMORY, min(kib, hw.CMOS_BASE_MEMORY_MAX_KIB), 2),
                                  (hw.CMOS_EXTENDED_MEMORY, extended, 2),
                                  (hw.CMOS_EXTENDED_MEMORY_POST, extended, 2),
                                  (hw.CMOS_MEMORY_ABOVE_16M, above_16m, 2),
                                  (hw.CMOS_MEMORY_ABOVE_4G, 0, 3)):    # guests have at most 1 GiB
        ram[register:register + size] = value.to_bytes(size, "little")
    checksum = sum(ram[hw.CMOS_CHECKSUM_FIRST:hw.CMOS_CHECKSUM_LAST + 1])
    ram[hw.CMOS_CHECKSUM_HIGH:hw.CMOS_CHECKSUM_LOW + 1] = checksum.to_bytes(2, "big")
    return bytes(ram)


def asm_constants() -> dict[str, int]:
    names = {f"RTC_KIND_{kind.name}": int(kind) for kind in Kind}
    names.update({f"RTC_FIELD_{name}": TIME_FIELDS.index(register) for name, register in (
        ("SECONDS", hw.RTC_SECONDS), ("MINUTES", hw.RTC_MINUTES), ("HOURS", hw.RTC_HOURS),
        ("DAY_OF_WEEK", hw.RTC_DAY_OF_WEEK), ("DAY_OF_MONTH", hw.RTC_DAY_OF_MONTH),
        ("MONTH", hw.RTC_MONTH), ("YEAR", hw.RTC_YEAR), ("CENTURY", hw.CMOS_CENTURY))})
    names.update(
        RTC_FIELD_BITS=8,
        RTC_YEAR_BIAS=YEAR_BIAS, RTC_MONTHS_PER_YEAR=MONTHS_PER_YEAR, RTC_MONTH_MARCH=MONTH_MARCH,
        RTC_SECONDS_PER_MINUTE=SECONDS_PER_MINUTE, RTC_SECONDS_PER_HOUR=SECONDS_PER_HOUR,
        RTC_SECONDS_PER_DAY=SECONDS_PER_DAY, RTC_DAYS_PER_WEEK=DAYS_PER_WEEK,
        RTC_DAYS_PER_ERA=DAYS_PER_ERA, RTC_DAYS_PER_CENTURY=DAYS_PER_CENTURY,
        RTC_DAYS_PER_4_YEARS=DAYS_PER_4_YEARS, RTC_DAYS_PER_YEAR=DAYS_PER_YEAR,
        RTC_CENTURIES_PER_ERA=CENTURIES_PER_ERA, RTC_YEARS_PER_LEAP_CYCLE=YEARS_PER_LEAP_CYCLE,
        RTC_YEARS_PER_CENTURY=YEARS_PER_CENTURY, RTC_YEARS_PER_ERA=YEARS_PER_CENTURY * CENTURIES_PER_ERA,
        RTC_EPOCH_SECONDS=EPOCH_SECONDS, RTC_WEEKDAY_OF_DAY_0=WEEKDAY_OF_DAY_0,
        RTC_MARCH_MONTHS=len(MARCH_MONTH_STARTS), RTC_TIME_FIELDS=len(TIME_FIELDS),
        # (year + YEAR_BIAS) / 100 + RTC_CENTURY_WRAP, modulo 100: the century register
        RTC_CENTURY_WRAP=YEARS_PER_CENTURY - YEAR_BIAS // YEARS_PER_CENTURY,
        # day of week (1-7) + RTC_WEEKDAY_UNBIAS - the calendar's (0-6) stays positive
        RTC_WEEKDAY_UNBIAS=2 * DAYS_PER_WEEK - 1,
        RTC_CENTURY_PIVOT_YEAR=CENTURY_PIVOT_YEAR, RTC_CENTURY_BEFORE_PIVOT=CENTURY_BEFORE_PIVOT,
        RTC_CENTURY_FROM_PIVOT=CENTURY_FROM_PIVOT,
    )
    return names
