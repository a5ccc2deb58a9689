"""Write a realistic customers CSV (the customers-2000000.csv columns plus free text), fast; stdlib only.

    python scripts/generate_customers.py --size 2GB --out data/imports/customers.csv
    python scripts/generate_customers.py --rows 10000 --duplicate-rate 0.01 --invalid-rate 0.01 --out /tmp/c.csv

Sizes are decimal (K/KB = 1000, M/MB = 10**6, G/GB = 10**9); KiB/MiB/GiB are binary. With --size the file
ends at the first row that reaches the size. Rows average ~850 bytes, most of it the "About Customer" text.
Customer ids are 15 mixed-case hex characters derived from the row index by a bijection, so they never
collide by accident (not even ignoring case); a duplicate row re-uses the id of an earlier valid row.
An invalid row is broken in exactly one way (see INVALID_KINDS) and is never a duplicate.
A JSON summary (rows, bytes, duplicates, invalid rows by kind) is printed on stdout.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
import unicodedata
from array import array
from datetime import date, timedelta
from pathlib import Path


def words(*lines: str, sep: str | None = None) -> list[str]:
    """Word lists are written as lines of text: easier to read and extend than one quoted string per word."""
    return [word.strip() for line in lines for word in line.split(sep) if word.strip()]


HEADER = (
    "Index,Customer Id,First Name,Last Name,Company,City,Country,Phone 1,Phone 2,Email,"
    "Subscription Date,Website,About Customer"
)
INVALID_KINDS = ("field_count", "empty_id", "bad_email", "bad_date", "bad_utf8")
CHUNK_ROWS = 8192

FIRST = words(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan",
    "Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy Anthony Betty Mark Sandra Donald",
    "Ashley Steven Kimberly Andrew Emily Paul Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian",
    "Melissa Timothy Deborah Ronald Stephanie Jason Rebecca George Sharon Edward Laura Jeffrey Cynthia",
    "Ryan Dorothy Jacob Amy Gary Kathleen Nicholas Angela Eric Shirley Jonathan Emma Stephen Brenda Larry",
    "Pamela Justin Nicole Scott Anna Brandon Samantha Benjamin Katherine Samuel Christine Gregory Debra",
    "Alexander Rachel Patrick Carolyn Frank Janet Raymond Maria Jack Olivia Dennis Heather Jerry Helen",
    "Tyler Catherine Aaron Diane Jose Julie Adam Victoria Nathan Joyce Henry Lauren Zachary Kelly Douglas",
    "Christina Peter Ruth Kyle Joan Noah Virginia Ethan Judith Jeremy Evelyn Christian Hannah Walter",
    "Andrea Keith Megan Austin Cheryl Roger Jacqueline José Zoë Łukasz Søren Björn François Chloé Jürgen",
    "Ngọc Siobhán Małgorzata Ömer Dmitrí Élodie Kōji Ana-María Þórunn Ñuño İlkay Renée",
)
LAST = words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez",
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark",
    "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams",
    "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz",
    "Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson",
    "Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray",
    "Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins",
    "Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons Romero",
    "Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant",
    "Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez",
    "McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman O'Brien O'Neill Müller Núñez Dvořák",
    "Søgaard Łopuszańska Nguyễn Öztürk Björklund Čapek Ibáñez Ångström Schäfer Gašparović",
)
CITIES = words(
    "New York|Los Angeles|Chicago|Houston|Phoenix|Philadelphia|San Antonio|San Diego|Dallas|Austin",
    "Portland|Denver|Boston|Seattle|Nashville|Detroit|Memphis|Baltimore|Milwaukee|Albuquerque|Tucson",
    "Fresno|Omaha|East Jenniferview|Port Kevinmouth|Lake Melissa|North Stephanieburgh|South Danielton",
    "West Aaronfort|London|Manchester|Dublin|Paris|Lyon|Berlin|Hamburg|Munich|Vienna|Amsterdam|Brussels",
    "Madrid|Lisbon|Rome|Zürich|Genève|Kraków|Łódź|Malmö|Göteborg|Reykjavík|São Paulo|Bogotá",
    "Ciudad de México|Montréal|Québec|Toronto|Sydney|Auckland|Tokyo|Ōsaka|Seoul|Singapore|Mumbai|İstanbul",
    "Cairo|Nairobi|Lagos|Washington, D.C.|St. John's|Saint-Étienne",
    sep="|",
)
COUNTRIES = words(
    "United States|United Kingdom|Ireland|France|Germany|Austria|Switzerland|Netherlands|Belgium|Spain",
    "Portugal|Italy|Poland|Sweden|Norway|Iceland|Brazil|Colombia|Mexico|Canada|Australia|New Zealand",
    "Japan|Singapore|India|Türkiye|Egypt|Kenya|Nigeria|Chile|Peru|Greece|Finland|Denmark|Czechia",
    "Croatia|Côte d'Ivoire|Réunion|Korea, Republic of|Congo, Democratic Republic of the",
    "Bonaire, Sint Eustatius and Saba|Virgin Islands, U.S.",
    "Saint Helena, Ascension and Tristan da Cunha",
    sep="|",
)
COMPANY_FORMS = (
    "{a} LLC",
    "{a} Ltd",
    "{a} PLC",
    "{a} Inc",
    "{a} Group",
    "{a}-{b}",
    "{a} and Sons",
    "{a}, {b} and {c}",
    "{a}, {b} and {c}",
    "{a} & {b}",
    "{a} {b} GmbH",
    "{a} S.A.",
    'The "{a}" Company',
    "{a}, Inc.",
)
TLDS = ("com", "com", "com", "net", "org", "info", "biz", "io", "co.uk", "de", "fr")
MAIL_HOSTS = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "proton.me", "icloud.com", "gmx.de")
SUBJECTS = (
    "The customer",
    "This account",
    "Our contact here",
    "The buyer",
    "She",
    "He",
    "The client",
    "The procurement lead",
    "The office manager",
    "Their finance team",
    "The founder",
    "The new owner",
)
VERBS = (
    "has ordered",
    "regularly buys",
    "asked about",
    "complained about",
    "praised",
    "returned",
    "requested a quote for",
    "renewed the contract for",
    "is evaluating",
    "cancelled",
    "upgraded to",
    "signed up for",
    "keeps asking for",
)
OBJECTS = (
    "standing desks",
    "the premium plan",
    "ergonomic chairs",
    "printer toner",
    "cloud backup",
    "the annual licence",
    "office coffee machines",
    "bulk paper",
    "spare laptop batteries",
    "the analytics add-on",
    "our support tier",
    "replacement parts",
    "the starter kit",
    "custom branded mugs",
    "a fleet of e-bikes",
    "noise-cancelling headsets",
)
TAILS = (
    "",
    "",
    " last quarter",
    " twice this year",
    ", usually by phone",
    ", mostly on Fridays",
    " after a long trial",
    " despite the price increase",
    ", citing a tight budget",
    " for three regional offices",
    " through a reseller",
    ", and wants invoices in EUR",
    " since the merger",
    ', calling it "good value"',
    ' and wrote "more, please!"',
    ", paid net 30",
    ", though delivery was late",
    " via the web shop",
)
EXTRAS = (
    "Prefers email over phone calls.",
    "Key contact changes often, so double-check names.",
    "Account flagged for a loyalty discount.",
    "Asked to be removed from the newsletter.",
    "Payment history is spotless.",
    "Time zone makes calls tricky; schedule before 10 am.",
    'Uses the nickname "Chief" in emails.',
    "VAT number on file, see CRM.",
    "Requires PO numbers on invoices.",
    "Interested in the beta programme.",
    "Ships to a warehouse, not the office.",
    "Notes from the kickoff call:\n- budget approved\n- rollout in Q3",
    "Visited the booth at the trade fair.",
)
# Each one the importer rejects: it trims a field first, so an email with a trailing space would be accepted.
BAD_EMAILS = ("{u}@@{d}", "{u} {u}@{d}", "{u}.{d}", "{u}@", "@{d}", "{u}@ {d}")
BAD_DATES = ("2023-02-30", "2021-02-29", "2022-04-31", "2020-13-01", "2019-00-10", "2022-06-31", "2021-11-31")
LATIN1_NAMES = ("M\udcfcller", "Jos\udce9", "Fran\udce7ois", "G\udcf6ran", "Ren\udce9e", "Sm\udcf8rrebr\udcf8d")
MASK60 = (1 << 60) - 1


def parse_size(text: str) -> int:
    """'200MB' -> 200_000_000, '2G' -> 2_000_000_000, '1GiB' -> 2**30 (decimal units, binary with 'i')."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([KMG])(i?)B?)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use e.g. 500K, 200MB, 2GB or 1GiB")
    number, unit, binary = match.groups()
    power = "KMG".index(unit.upper()) + 1 if unit else 0
    return int(float(number) * (1024 if binary else 1000) ** power)


def csv_field(text: str) -> str:
    """RFC 4180: quote a field holding a comma, quote or line break; double its quotes."""
    if "," in text or '"' in text or "\n" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name.lower()).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z]", "", ascii_name) or "user"


class Pools:
    """Every value a row is drawn from, built once per seed: rows then cost a few lookups and one join."""

    def __init__(self, rng: random.Random):
        self.first = [(csv_field(n), slug(n)) for n in FIRST]
        self.last = [(csv_field(n), slug(n)) for n in LAST]
        self.company = [csv_field(self._company(rng)) for _ in range(4000)]
        self.city = [csv_field(c) for c in CITIES]
        self.country = [csv_field(c) for c in COUNTRIES]
        self.phone = [self._phone(rng) for _ in range(20000)]
        self.domain = [f"{slug(rng.choice(LAST))}.{rng.choice(TLDS)}" for _ in range(2000)] + list(MAIL_HOSTS) * 100
        self.website = [
            f"{rng.choice(('http://', 'https://', 'https://www.', 'http://www.'))}{d}/" for d in self.domain[:2000]
        ]
        start = date(2020, 1, 1)
        self.date = [(start + timedelta(days=n)).isoformat() for n in range(3 * 366)]
        self.sentence = [self._sentence(rng) for _ in range(5000)] + list(EXTRAS)
        self.sentence_count = [5, 6, 7, 8, 8, 9, 10, 10, 11, 11, 12, 13, 14, 16, 18]
        self.separator = ["", ".", "_", "", ".", ""]
        # 3 hex digits per 12 bits, each letter upper-cased at random once: ids look like 'DD37Cf93aecA6Dc'
        self.hex3 = ["".join(ch.upper() if rng.random() < 0.5 else ch for ch in f"{n:03x}") for n in range(4096)]

    @staticmethod
    def _company(rng: random.Random) -> str:
        a, b, c = (rng.choice(LAST) for _ in range(3))
        return rng.choice(COMPANY_FORMS).format(a=a, b=b, c=c)

    @staticmethod
    def _phone(rng: random.Random) -> str:
        a, b, c = rng.randrange(200, 1000), rng.randrange(100, 1000), rng.randrange(10000)
        forms = (
            f"{a}-{b}-{c:04d}",
            f"({a}){b}-{c:04d}",
            f"{a}.{b}.{c:04d}",
            f"+1-{a}-{b}-{c:04d}",
            f"001-{a}-{b}-{c:04d}",
            f"{a}{b}{c:04d}",
        )
        phone = rng.choice(forms)
        return phone + f"x{rng.randrange(1, 100000)}" if rng.random() < 0.3 else phone

    @staticmethod
    def _sentence(rng: random.Random) -> str:
        return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(TAILS)}."


class RowBuilder:
    """Builds rows in chunks of strings and accounts for duplicates and invalid rows."""

    def __init__(self, seed: int, duplicate_rate: float, invalid_rate: float):
        self.rng = random.Random(seed)
        self.pools = Pools(self.rng)
        self.key = self.rng.getrandbits(60)
        self.invalid_rate = invalid_rate
        self.special_rate = invalid_rate + duplicate_rate
        self.originals = array("q")  # indexes of valid rows whose id is new: what duplicates copy
        self.rows = self.duplicates = 0
        self.invalid = dict.fromkeys(INVALID_KINDS, 0)

    def customer_id(self, index: int) -> str:
        """A bijection of the index on 60 bits (odd multipliers, xor-shifts), as 15 mixed-case hex digits."""
        v = (index * 0x9E3779B97F4A7C1 + self.key) & MASK60
        v ^= v >> 31
        v = (v * 0xBF58476D1CE4E5B9) & MASK60
        v ^= v >> 29
        h = self.pools.hex3
        return h[v >> 48] + h[(v >> 36) & 4095] + h[(v >> 24) & 4095] + h[(v >> 12) & 4095] + h[v & 4095]

    def chunk(self, start: int, count: int) -> tuple[list[str], list[tuple[int, str]]]:
        """Rows start..start+count-1 (each ending in a newline) and (position, kind) of every special row."""
        p, rng = self.pools, self.rng
        choices, random_ = rng.choices, rng.random
        columns = zip(
            choices(p.first, k=count),
            choices(p.last, k=count),
            choices(p.company, k=count),
            choices(p.city, k=count),
            choices(p.country, k=count),
            choices(p.phone, k=count),
            choices(p.phone, k=count),
            choices(p.separator, k=count),
            choices(p.domain, k=count),
            choices(p.date, k=count),
            choices(p.website, k=count),
            choices(p.sentence_count, k=count),
            strict=True,
        )
        rows: list[str] = []
        specials: list[tuple[int, str]] = []
        for pos, (first, last, company, city, country, phone1, phone2, sep, domain, day, web, n) in enumerate(columns):
            index = start + pos
            about = csv_field(" ".join(choices(p.sentence, k=n)))
            email = f"{first[1]}{sep}{last[1]}@{domain}"
            r = random_()
            if r >= self.special_rate or (r >= self.invalid_rate and not self.originals):
                self.originals.append(index)
                cid = self.customer_id(index)
            elif r >= self.invalid_rate:
                specials.append((pos, "duplicate"))
                cid = self.customer_id(self.originals[int(random_() * len(self.originals))])
            else:
                kind = INVALID_KINDS[int(random_() * len(INVALID_KINDS))]
                specials.append((pos, kind))
                fields = [
                    str(index),
                    self.customer_id(index),
                    first[0],
                    last[0],
                    company,
                    city,
                    country,
                    phone1,
                    phone2,
                    email,
                    day,
                    web,
                    about,
                ]
                rows.append(",".join(self.break_row(kind, fields)) + "\n")
                continue
            rows.append(
                f"{index},{cid},{first[0]},{last[0]},{company},{city},{country},{phone1},{phone2},"
                f"{email},{day},{web},{about}\n"
            )
        return rows, specials

    def break_row(self, kind: str, fields: list[str]) -> list[str]:
        """Make a row invalid in exactly one way (what an importer must reject)."""
        choice = self.rng.choice
        if kind == "field_count":
            return fields[:-1] if self.rng.random() < 0.5 else [*fields, "unexpected"]
        if kind == "empty_id":
            fields[1] = choice(("", "", '""'))
        elif kind == "bad_email":
            user, domain = fields[9].split("@")
            fields[9] = choice(BAD_EMAILS).format(u=user, d=domain)
        elif kind == "bad_date":
            fields[10] = choice(BAD_DATES)
        else:  # bad_utf8: a Latin-1 encoded name; surrogateescape writes these as single bytes
            fields[choice((2, 3))] = choice(LATIN1_NAMES)
        return fields

    def count(self, specials: list[tuple[int, str]], kept: int) -> None:
        self.rows += kept
        for pos, kind in specials:
            if pos < kept:
                if kind == "duplicate":
                    self.duplicates += 1
                else:
                    self.invalid[kind] += 1


def _fit(rows: list[str], room: int) -> tuple[bytes, int]:
    """The first rows of a chunk that reach `room` bytes, and how many there are."""
    out = bytearray()
    for kept, row in enumerate(rows, 1):
        out += row.encode("utf-8", "surrogateescape")
        if len(out) >= room:
            return bytes(out), kept
    return bytes(out), len(rows)


def generate(
    out: Path,
    *,
    rows: int | None = None,
    size: int | None = None,
    seed: int = 42,
    duplicate_rate: float = 0.0,
    invalid_rate: float = 0.0,
) -> dict[str, object]:
    """Write the CSV to `out` (stopping at `rows` rows or `size` bytes) and return the summary."""
    if (rows is None) == (size is None):
        raise ValueError("give exactly one of rows or size")
    started = time.perf_counter()
    builder = RowBuilder(seed, duplicate_rate, invalid_rate)
    with out.open("wb") as file:
        written = file.write(HEADER.encode() + b"\n")
        while (rows is None or builder.rows < rows) and (size is None or written < size):
            count = CHUNK_ROWS if rows is None else min(CHUNK_ROWS, rows - builder.rows)
            chunk, specials = builder.chunk(builder.rows + 1, count)
            data = "".join(chunk).encode("utf-8", "surrogateescape")
            kept = count
            if size is not None and written + len(data) > size:
                data, kept = _fit(chunk, size - written)
            written += file.write(data)
            builder.count(specials, kept)
    seconds = time.perf_counter() - started
    return {
        "path": str(out),
        "rows": builder.rows,
        "bytes": written,
        "duplicates": builder.duplicates,
        "invalid": sum(builder.invalid.values()),
        "invalidByKind": builder.invalid,
        "seed": seed,
        "seconds": round(seconds, 2),
        "mbPerSecond": round(written / 1e6 / max(seconds, 1e-9), 1),
    }


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--rows", type=int, help="number of data rows")
    amount.add_argument("--size", type=parse_size, help="file size: 500K, 200MB, 2GB (decimal) or 1GiB (binary)")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write (overwritten)")
    parser.add_argument("--seed", type=int, default=42, help="same seed, same file")
    parser.add_argument("--duplicate-rate", type=_rate, default=0.0, help="fraction of rows re-using an earlier id")
    parser.add_argument("--invalid-rate", type=_rate, default=0.0, help="fraction of rows broken in one way")
    args = parser.parse_args(argv)
    if args.duplicate_rate + args.invalid_rate > 1:
        parser.error("--duplicate-rate plus --invalid-rate must not exceed 1")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = generate(
        args.out,
        rows=args.rows,
        size=args.size,
        seed=args.seed,
        duplicate_rate=args.duplicate_rate,
        invalid_rate=args.invalid_rate,
    )
    json.dump(summary, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
