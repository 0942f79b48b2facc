#!/usr/bin/env python3
"""Independent reference for engine/tests/vectors/*.json: MTProto 2.0/1.0 secret-message
encryption and DH, written from ../shared/spec/end-to-end.md, end-to-end-v1.md and
security-guidelines.md with Python's hashlib and pycryptodome's AES (ECB, IGE chained here);
the key visualization as Telegram Android draws and prints it (IdenticonDrawable.getBits: cell
k = (bytes[2k/8] >> (2k%8)) & 3; IdenticonActivity: the first 32 bytes, 8 a line).
Run: pip install pycryptodome && python3 gen.py > vectors.json"""
import hashlib, json
from Crypto.Cipher import AES

def ige_encrypt(key, iv, data):
    aes = AES.new(key, AES.MODE_ECB)
    c_prev, m_prev = iv[:16], iv[16:]
    out = b""
    for i in range(0, len(data), 16):
        m = data[i:i+16]
        c = bytes(a ^ b for a, b in zip(aes.encrypt(bytes(a ^ b for a, b in zip(m, c_prev))), m_prev))
        out += c
        c_prev, m_prev = c, m
    return out

def fp(key):
    return int.from_bytes(hashlib.sha1(key).digest()[-8:], "little", signed=True)

def v2(key, x, payload, padding):
    pt = len(payload).to_bytes(4, "little") + payload + padding
    msg_key = hashlib.sha256(key[88+x:88+x+32] + pt).digest()[8:24]
    a = hashlib.sha256(msg_key + key[x:x+36]).digest()
    b = hashlib.sha256(key[40+x:40+x+36] + msg_key).digest()
    aes_key = a[:8] + b[8:24] + a[24:32]
    aes_iv = b[:8] + a[8:24] + b[24:32]
    return fp(key).to_bytes(8, "little", signed=True) + msg_key + ige_encrypt(aes_key, aes_iv, pt)

def v1(key, payload, padding):
    pt = len(payload).to_bytes(4, "little") + payload
    msg_key = hashlib.sha1(pt).digest()[4:20]
    x = 0
    a = hashlib.sha1(msg_key + key[x:x+32]).digest()
    b = hashlib.sha1(key[32+x:48+x] + msg_key + key[48+x:64+x]).digest()
    c = hashlib.sha1(key[64+x:96+x] + msg_key).digest()
    d = hashlib.sha1(msg_key + key[96+x:128+x]).digest()
    aes_key = a[:8] + b[8:20] + c[4:16]
    aes_iv = a[8:20] + b[:8] + c[16:20] + d[:8]
    return fp(key).to_bytes(8, "little", signed=True) + msg_key + ige_encrypt(aes_key, aes_iv, pt + padding)

key = bytes((i * 7 + 3) % 256 for i in range(256))
payload = bytes.fromhex("838804f390000000")  # decryptedMessageActionNotifyLayer layer=144
p = bytes.fromhex(open(__file__.replace("gen.py", "dh_prime.hex")).read().strip())
P = int.from_bytes(p, "big")
a = int.from_bytes(hashlib.sha256(b"a").digest() * 8, "big")
b = int.from_bytes(hashlib.sha256(b"b").digest() * 8, "big")
ga, gb = pow(3, a, P), pow(3, b, P)
shared = pow(gb, a, P).to_bytes(256, "big")
def visualization(initial, layer46):
    v = hashlib.sha1(initial).digest()[:16] + hashlib.sha256(layer46).digest()[:20]
    pixels = [(v[(2 * k) // 8] >> ((2 * k) % 8)) & 3 for k in range(144)]
    lines = [" ".join("%02X" % x for x in v[i:i+4]) + "  " + " ".join("%02X" % x for x in v[i+4:i+8])
             for i in range(0, 32, 8)]
    return {"hex": v.hex(), "pixels": pixels, "hex_lines": lines}

print(json.dumps({
    "key_hex": key.hex(),
    "payload_hex": payload.hex(),
    "v2_originator": {"padding_hex": "ab" * 20, "wire_hex": v2(key, 0, payload, b"\xab" * 20).hex()},
    "v2_participant": {"padding_hex": "cd" * 36, "wire_hex": v2(key, 8, payload, b"\xcd" * 36).hex()},
    "v1": {"padding_hex": "ef" * 4, "wire_hex": v1(key, payload, b"\xef" * 4).hex()},
    "dh": {"g": 3, "a_hex": a.to_bytes(256, "big").hex(), "b_hex": b.to_bytes(256, "big").hex(),
           "g_a_hex": ga.to_bytes(256, "big").hex(), "g_b_hex": gb.to_bytes(256, "big").hex(),
           "key_hex": shared.hex(), "key_fingerprint": str(fp(shared))},
    "visualization": {"initial_is_layer46": visualization(key, key),
                      "layer46_is_dh_key": visualization(key, shared)},
    "file": {"key_hex": "11" * 32, "iv_hex": "22" * 32,
             "fingerprint": int.from_bytes(bytes(x ^ y for x, y in zip(hashlib.md5(b"\x11"*32 + b"\x22"*32).digest()[:4], hashlib.md5(b"\x11"*32 + b"\x22"*32).digest()[4:8])), "little", signed=True)},
}, indent=1))
