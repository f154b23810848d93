"""Oracle test of our zip reader and writer against Python's zipfile (through tests/tools/ucp_zip_tool).

  1. every torch.save fixture -> `ucp_zip_tool list` must report the records zipfile reports (names,
     header offsets, sizes, CRCs), data offsets that agree with the local headers as parsed here, and
     record bytes equal to what zipfile.read() returns;
  2. archives written by `ucp_zip_tool write` (write_zip_file) -> zipfile reads the same names and
     bytes, CRCs check out (testzip), data starts 64-aligned behind torch's "FB" padding field;
  3. a sparse 5 GiB archive (`ucp_zip_tool sparse64`) and a 70000-record one (`ucp_zip_tool many`)
     -> zipfile agrees on every ZIP64 field it decodes;
  4. archives written by zipfile itself (stored, forced ZIP64, with an archive comment) and one built
     here with ZIP64 placeholders in every field are read by us identically; deflated ones are
     refused naming the record.
No torch import: zipfile is the oracle here.
"""

import json
import os
import struct
import subprocess
import tempfile
import unittest
import zipfile
import zlib

BUILD_DIR = os.environ.get("UCP_BUILD_DIR", "")
GOLDEN_DIR = os.environ.get("UCP_GOLDEN_DIR", os.path.join(os.path.dirname(__file__), "..", "golden"))
TOOL = os.path.join(BUILD_DIR, "tests", "ucp_zip_tool")


def run_tool(*args, check=True):
    proc = subprocess.run([TOOL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"ucp_zip_tool {' '.join(args[:3])} exited {proc.returncode}: "
                             f"{proc.stderr.decode('utf-8', 'replace').strip()}")
    return proc


def tool_list(paths):
    """{path: json line} from `ucp_zip_tool list`, in batches (one process per file would dominate)."""
    out = {}
    for i in range(0, len(paths), 400):
        proc = run_tool("list", *paths[i:i + 400], check=False)
        for line in proc.stdout.decode().splitlines():
            entry = json.loads(line)
            out[entry["path"]] = entry
    return out


def local_data_offset(raw_or_file, header_offset):
    """Data offset from the local header, parsed here (APPNOTE 4.3.7), plus the header's extra field."""
    if isinstance(raw_or_file, (bytes, bytearray, memoryview)):
        head = bytes(raw_or_file[header_offset:header_offset + 30])
    else:
        raw_or_file.seek(header_offset)
        head = raw_or_file.read(30)
    sig, name_len, extra_len = struct.unpack("<I22xHH", head)
    assert sig == 0x04034B50, hex(sig)
    if isinstance(raw_or_file, (bytes, bytearray, memoryview)):
        extra = bytes(raw_or_file[header_offset + 30 + name_len:header_offset + 30 + name_len + extra_len])
    else:
        raw_or_file.seek(header_offset + 30 + name_len)
        extra = raw_or_file.read(extra_len)
    return header_offset + 30 + name_len + extra_len, extra


def extra_fields(extra):
    fields = []
    pos = 0
    while pos + 4 <= len(extra):
        fid, size = struct.unpack("<HH", extra[pos:pos + 4])
        fields.append((fid, extra[pos + 4:pos + 4 + size]))
        pos += 4 + size
    assert pos == len(extra), "extra field does not parse exactly"
    return fields


class ToolTestCase(unittest.TestCase):
    def setUp(self):
        if not BUILD_DIR:
            self.fail("UCP_BUILD_DIR is not set (run through ctest, or export it)")
        if not os.access(TOOL, os.X_OK):
            self.fail(f"{TOOL} is missing: build the ucp_zip_tool target first")
        self.tmp = tempfile.TemporaryDirectory(prefix="ucp_zip_python_")
        self.addCleanup(self.tmp.cleanup)

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def assert_listing_matches_zipfile(self, path, entry, read_bytes=True):
        self.assertNotIn("error", entry, entry.get("error"))
        with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
            infos = zf.infolist()
            ours = entry["records"]
            self.assertEqual([bytes.fromhex(r["name_hex"]) for r in ours],
                             [i.orig_filename.encode("utf-8" if i.flag_bits & 0x800 else "cp437") for i in infos],
                             path)
            for info, rec in zip(infos, ours):
                self.assertEqual(rec["header_offset"], info.header_offset, info.filename)
                self.assertEqual(rec["size"], info.file_size, info.filename)
                self.assertEqual(rec["size"], info.compress_size, info.filename)
                self.assertEqual(rec["crc32"], info.CRC, info.filename)
                data_offset, _ = local_data_offset(f, info.header_offset)
                self.assertEqual(rec["data_offset"], data_offset, info.filename)
                if read_bytes:
                    self.assertIs(rec["crc_ok"], True, info.filename)
                    f.seek(data_offset)
                    self.assertEqual(f.read(info.file_size), zf.read(info), info.filename)


class GoldenFixtures(ToolTestCase):
    def test_every_fixture_lists_like_zipfile(self):
        paths = []
        for root, _, files in os.walk(os.path.join(GOLDEN_DIR, "deepspeed")):
            paths += [os.path.join(root, n) for n in files if n.endswith(".pt")]
        paths.sort()
        self.assertGreater(len(paths), 300)
        listed = tool_list(paths)
        self.assertEqual(sorted(listed), paths)
        for p in paths:
            self.assert_listing_matches_zipfile(p, listed[p])


class WrittenByUs(ToolTestCase):
    CONTENTS = [
        ("archive/data.pkl", b"\x80\x02}q\x00." * 7),
        ("archive/empty", b""),
        ("archive/données/ü — 名前.bin", bytes(range(256)) * 3),
        ("archive/" + "L" * 300, b"x"),
        ("p" * 34, b"exactly aligned header"),
        ("archive/data/0", os.urandom(100000)),
        ("archive/version", b"3\n"),
    ]

    def write(self, out, contents, align=None):
        args = []
        for i, (name, data) in enumerate(contents):
            src = self.path(f"src{i}")
            with open(src, "wb") as f:
                f.write(data)
            args.append(f"{name}={src}")
        if align is not None:
            args = ["--align", str(align)] + args
        run_tool("write", out, *args)

    def check_written(self, out, contents, align):
        with zipfile.ZipFile(out) as zf, open(out, "rb") as f:
            self.assertIsNone(zf.testzip())  # Every CRC checks out.
            self.assertEqual(zf.namelist(), [n for n, _ in contents])
            for info, (name, data) in zip(zf.infolist(), contents):
                self.assertEqual(zf.read(info), data, name)
                self.assertEqual(info.compress_type, zipfile.ZIP_STORED)
                self.assertTrue(info.flag_bits & 0x800, "UTF-8 name flag")
                data_offset, extra = local_data_offset(f, info.header_offset)
                self.assertEqual(data_offset % align, 0, name)
                fields = extra_fields(extra)
                if fields:
                    # Only torch's padding field, "FB" + 'Z' bytes, and only when needed.
                    self.assertEqual(len(fields), 1, name)
                    self.assertEqual(fields[0][0], 0x4246, name)
                    self.assertEqual(set(fields[0][1]) - {ord("Z")}, set(), name)
                    self.assertLess(len(extra), align + 4, name)
                else:
                    self.assertEqual((info.header_offset + 30 + len(name.encode())) % align, 0, name)
        self.assert_listing_matches_zipfile(out, tool_list([out])[out])

    def test_varied_names_and_sizes(self):
        for align in (64, 1, 4096):
            out = self.path(f"varied_{align}.zip")
            self.write(out, self.CONTENTS, align=None if align == 64 else align)
            self.check_written(out, self.CONTENTS, align)

    def test_many_small_records(self):
        contents = [(f"many/data/{i}", os.urandom((i * 37) % 1000)) for i in range(300)]
        out = self.path("many.zip")
        self.write(out, contents)
        self.check_written(out, contents, 64)

    def test_empty_archive(self):
        out = self.path("empty.zip")
        self.write(out, [])
        with zipfile.ZipFile(out) as zf:
            self.assertEqual(zf.namelist(), [])
        self.assertEqual(os.path.getsize(out), 22)

    def test_seventy_thousand_records_use_zip64_end_records(self):
        out = self.path("seventy.zip")
        run_tool("many", out, "70000")
        with open(out, "rb") as f:
            f.seek(-22, os.SEEK_END)
            eocd = f.read(22)
            f.seek(-42, os.SEEK_END)
            locator = f.read(20)
        self.assertEqual(struct.unpack("<H", eocd[10:12])[0], 0xFFFF)
        self.assertEqual(locator[:4], b"PK\x06\x07")
        with zipfile.ZipFile(out) as zf:
            infos = zf.infolist()
            self.assertEqual(len(infos), 70000)
            for i in (0, 1, 65534, 65535, 69999):
                self.assertEqual(infos[i].filename, f"r/{i}")
                self.assertEqual(zf.read(infos[i]), str(i).encode())
        self.assert_listing_matches_zipfile(out, tool_list([out])[out], read_bytes=False)

    def test_sparse_archive_over_four_gib(self):
        out = self.path("sparse64.zip")
        run_tool("sparse64", out)
        big = 5 << 30
        self.assertGreater(os.path.getsize(out), big)
        listed = tool_list([out])[out]
        with zipfile.ZipFile(out) as zf:
            infos = zf.infolist()
            self.assertEqual([i.filename for i in infos], ["big/data.pkl", "big/data/0", "big/data/1", "big/version"])
            self.assertEqual(infos[1].file_size, big)
            self.assertEqual(infos[1].compress_size, big)
            # CRC of 5 GiB of zeros, computed directly here (zlib over 64 MiB blocks).
            crc, block = 0, bytes(1 << 26)
            for _ in range(big // len(block)):
                crc = zlib.crc32(block, crc)
            self.assertEqual(infos[1].CRC, crc)
            self.assertGreater(infos[2].header_offset, 1 << 32)  # Decoded from our ZIP64 extra.
            self.assertEqual(zf.read("big/data/1"), b"tail-bytes")
            self.assertEqual(zf.read("big/version"), b"3\n")
            self.assertEqual(zf.read("big/data.pkl"), b"0123456789")
            with zf.open("big/data/0") as stream:
                self.assertEqual(stream.read(4096), bytes(4096))
        with open(out, "rb") as f:
            _, extra = local_data_offset(f, infos[1].header_offset)
        fields = extra_fields(extra)
        self.assertEqual(fields[0], (1, struct.pack("<QQ", big, big)))  # ZIP64 sizes in the local header.
        self.assertEqual(fields[1][0], 0x4246)
        self.assert_listing_matches_zipfile(out, listed, read_bytes=False)
        self.assertIsNone(listed["records"][1]["crc_ok"])
        self.assertEqual([r["crc_ok"] for i, r in enumerate(listed["records"]) if i != 1], [True] * 3)


class WrittenByZipfile(ToolTestCase):
    def test_stored_archives_read_like_zipfile(self):
        variants = {
            "plain.zip": dict(),
            "zip64.zip": dict(force_zip64=True),
            "comment.zip": dict(comment=b"an archive comment " * 10),
        }
        for name, opts in variants.items():
            out = self.path(name)
            with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
                if "comment" in opts:
                    zf.comment = opts["comment"]
                for i in range(5):
                    with zf.open(f"d/{i}", "w", force_zip64=opts.get("force_zip64", False)) as w:
                        w.write(os.urandom(i * 100))
            self.assert_listing_matches_zipfile(out, tool_list([out])[out])

    def test_zip64_placeholders_everywhere(self):
        # Built here by hand: every 32-bit size/offset field and every end-record count holds its
        # placeholder, so all values come from ZIP64 extra fields and the ZIP64 end record.
        # (tests/fuzz/corpus/zip/zip64_placeholders.pt is this file.)
        recs = [("z64/data.pkl", b"\x80\x02K\x07."), ("z64/data/0", bytes(range(40))), ("z64/version", b"3\n")]
        out, cd = bytearray(), bytearray()
        for name, data in recs:
            n, off, crc = name.encode(), len(out), zlib.crc32(data)
            extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
            out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0x800, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                               len(n), len(extra)) + n + extra + data
            cextra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), off)
            cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0x800, 0, 0, 0, crc, 0xFFFFFFFF,
                              0xFFFFFFFF, len(n), len(cextra), 0, 0, 0, 0, 0xFFFFFFFF) + n + cextra
        cd_offset = len(out)
        out += cd
        z64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(recs), len(recs), len(cd), cd_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
        path = self.path("zip64_placeholders.pt")
        with open(path, "wb") as f:
            f.write(out)
        with zipfile.ZipFile(path) as zf:
            self.assertIsNone(zf.testzip())
            self.assertEqual([i.header_offset for i in zf.infolist()], [0, 67, 167])
        self.assert_listing_matches_zipfile(path, tool_list([path])[path])
        with open(os.path.join(os.path.dirname(__file__), "..", "fuzz", "corpus", "zip", "zip64_placeholders.pt"),
                  "rb") as f:
            self.assertEqual(f.read(), bytes(out))

    def test_deflated_archive_is_refused_naming_the_record(self):
        out = self.path("deflated.zip")
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("d/packed", b"a" * 1000)
        entry = tool_list([out])[out]
        self.assertEqual(entry["code"], "Unimplemented")
        self.assertIn("'d/packed'", entry["error"])
        self.assertIn("compression method 8 (deflate)", entry["error"])
        self.assertIn(out, entry["error"])

    def test_not_a_zip_is_data_loss(self):
        out = self.path("text.pt")
        with open(out, "wb") as f:
            f.write(b"not a zip file at all\n" * 100)
        with self.assertRaises(zipfile.BadZipFile):
            zipfile.ZipFile(out)
        entry = tool_list([out])[out]
        self.assertEqual(entry["code"], "DataLoss")
        self.assertIn(out, entry["error"])


if __name__ == "__main__":
    unittest.main()
