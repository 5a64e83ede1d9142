"""A tiny authoritative DNS responder over UDP for the image test
(tests/k8s_image.rs), in a network namespace of the test's own (started
by tests/support/netns.rs: `World::dns_responder`).

  dns_responder.py BIND PORT LOG NAME=IPV4 [NAME=IPV4 ...]

Answers an A question for a listed name with its address, any other type
for a listed name with no records (NODATA), and anything else with
NXDOMAIN (RFC 1035 section 4.1; the answer's name is a pointer to the
question's, section 4.1.4). Appends each question's name and type to LOG.
"""

import socket
import struct
import sys

bind, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
records = dict(arg.split("=", 1) for arg in sys.argv[4:])

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((bind, port))
while True:
    query, peer = sock.recvfrom(512)
    if len(query) < 12:
        continue
    ident, flags = struct.unpack(">HH", query[:4])
    labels, i = [], 12
    while i < len(query) and query[i] != 0:
        labels.append(query[i + 1 : i + 1 + query[i]].decode("ascii", "replace"))
        i += query[i] + 1
    qtype = struct.unpack(">H", query[i + 1 : i + 3])[0]
    question = query[12 : i + 5]
    name = ".".join(labels).lower()
    with open(log, "a") as f:
        f.write(f"{name} {qtype}\n")
    answers, rcode = b"", 0
    if name not in records:
        rcode = 3
    elif qtype == 1:
        address = socket.inet_aton(records[name])
        answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + address
    # QR, AA, and RD copied from the question; RA.
    out_flags = 0x8400 | (flags & 0x0100) | 0x0080 | rcode
    header = struct.pack(">HHHHHH", ident, out_flags, 1, 1 if answers else 0, 0, 0)
    sock.sendto(header + question + answers, peer)
