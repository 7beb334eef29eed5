#!/usr/bin/env python3
"""Writes the image files the image-decoding tests need (standard library only).

usage: make_test_images.py OUT_DIR STAMP

PNGs of the kinds people drop into a chat (8- and 16-bit gray, 16-bit RGB, palette with a
transparent entry, RGBA whose transparent pixels still carry colour), an animated GIF, and
hostile files: a zero-size PNG, a decompression bomb (a 60000 x 60000 header over a few bytes
of data), truncated PNG data, and a text file named .png.
"""
import os
import struct
import sys
import zlib


def chunk(kind, data):
    c = kind + data
    return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)


def png(width, height, bit_depth, color_type, rows, extra=b""):
    """rows: list of bytes, one per row, without the filter byte."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\0" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def gif_frame_lzw(indices, min_code_size=7):
    """LZW data that never lets the code table grow: a clear code before every 100 codes."""
    clear, eoi = 1 << min_code_size, (1 << min_code_size) + 1
    size = min_code_size + 1
    codes = []
    for i, v in enumerate(indices):
        if i % 100 == 0:
            codes.append(clear)
        codes.append(v)
    codes.append(eoi)
    bits, n, out = 0, 0, bytearray()
    for c in codes:
        bits |= c << n
        n += size
        while n >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            n -= 8
    if n:
        out.append(bits & 0xFF)
    blocks = bytearray([min_code_size])
    for i in range(0, len(out), 255):
        part = out[i:i + 255]
        blocks.append(len(part))
        blocks += part
    blocks.append(0)
    return bytes(blocks)


def animated_gif(width, height, frames, palette):
    """frames: lists of palette indices (width * height each); 128-entry global palette."""
    pal = bytearray()
    for i in range(128):
        pal += bytes(palette[i] if i < len(palette) else (0, 0, 0))
    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", width, height, 0xF6, 0, 0)  # global table, 128 colours
    out += pal
    out += b"\x21\xFF\x0BNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for f in frames:
        out += b"\x21\xF9\x04\x04\x0A\x00\x00\x00"  # 100 ms, keep the frame
        out += b"\x2C" + struct.pack("<HHHHB", 0, 0, width, height, 0)
        out += gif_frame_lzw(f)
    out += b"\x3B"
    return bytes(out)


def main():
    out, stamp = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)

    def write(name, data):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

    w, h = 7, 5
    # 8-bit gray: value = 30 * x + y
    write("gray8.png", png(w, h, 8, 0, [bytes(30 * x + y for x in range(w)) for y in range(h)]))
    # 16-bit gray: value = (30 * x + y) * 256 + 100, whose high byte is 30 * x + y
    write("gray16.png", png(w, h, 16, 0, [b"".join(struct.pack(">H", (30 * x + y) * 256 + 100)
                                                   for x in range(w)) for y in range(h)]))
    # 16-bit RGB: channel c = (20 * x + y + 30 * c) * 256 + 255
    write("rgb16.png", png(w, h, 16, 2, [b"".join(struct.pack(">HHH", *[(20 * x + y + 30 * c) * 256
                                                                        + 255 for c in range(3)])
                                                  for x in range(w)) for y in range(h)]))
    # palette: index = (x + y) % 4; entry 3 fully transparent but coloured (9, 8, 7)
    plte = bytes([200, 10, 10, 10, 200, 10, 10, 10, 200, 9, 8, 7])
    write("palette.png", png(w, h, 8, 3, [bytes((x + y) % 4 for x in range(w)) for y in range(h)],
                             chunk(b"PLTE", plte) + chunk(b"tRNS", bytes([255, 255, 255, 0]))))
    # RGBA: colour (x * 30, y * 40, 77), alpha 0 on even x: the colour must survive
    write("rgba.png", png(w, h, 8, 6, [b"".join(bytes([x * 30, y * 40, 77, 0 if x % 2 == 0 else 255])
                                                for x in range(w)) for y in range(h)]))
    # animated GIF: frame 1 all index 1 (red), frame 2 all index 2 (green)
    write("animated.gif", animated_gif(w, h, [[1] * (w * h), [2] * (w * h)],
                                       [(0, 0, 0), (255, 0, 0), (0, 255, 0)]))
    # hostile files
    write("zero.png", png(0, 5, 8, 0, []))
    bomb = png(60000, 60000, 8, 0, [b""])  # header only: the data stops at once
    write("bomb.png", bomb)
    full = png(64, 64, 8, 2, [bytes((x * 3 + y) % 256 for x in range(64 * 3)) for y in range(64)])
    write("truncated.png", full[:len(full) // 2])
    write("not-an-image.png", b"hello, this is text\n")
    write("empty.png", b"")
    with open(stamp, "w") as f:
        f.write(out + "\n")


if __name__ == "__main__":
    main()
