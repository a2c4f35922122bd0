#!/usr/bin/env python3
"""Writes a mongoexport (one document per line, as mongoexport writes by default) of N entries
shaped like the seed's (docs/seed-entry.json): 1 to 7 tags each from a vocabulary of 40 ("gpu"
on about 1 %), names "registry-<i>" plus a word, MongoDB's `_id` as extended JSON.

    scripts/bench/gen-mongoexport.py 1000000 > /tmp/export-1m.json

Deterministic: the same N gives the same file."""
import json
import random
import sys
import uuid

WORDS = ["alpha", "beta", "gamma", "delta", "edge", "core", "mirror", "cache", "build", "prod"]
TAGS = ["ai", "training", "internal", "fast-pull", "cpu", "eu", "us", "asia", "edge", "prod",
        "dev", "staging", "ml", "data", "public", "private", "arm64", "amd64", "cache", "mirror",
        "team-a", "team-b", "team-c", "team-d", "batch", "infer", "vision", "nlp", "audio", "robotics",
        "k8s", "bare-metal", "s3", "fs", "ssd", "hdd", "ipv6", "lab", "archive", "nightly"]


def main():
    n = int(sys.argv[1])
    rng = random.Random(22)
    out = sys.stdout
    for i in range(n):
        tags = rng.sample(TAGS, rng.randint(1, 7))
        if rng.random() < 0.01:
            tags[0] = "gpu"
        host = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:5000"
        doc = {
            "_id": {"$oid": f"{i:024x}"},
            "container_registry_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "container_registry_name": f"registry-{i} {rng.choice(WORDS)}",
            "container_registry_metadata": {"environment": rng.choice(["production", "staging"]),
                                            "owner": f"team-{i % 97}", "region": "us-west-2"},
            "container_registry_tags": tags,
            "container_registry_public_url": f"http://{host}",
            "container_registry_image_prefix": host,
            "container_registry_config": {"auth_required": rng.random() < 0.3, "mirror_enabled": False,
                                          "storage_backend": "s3", "max_layer_size_mb": 500},
            "container_registry_storage_info": {"storage_type": rng.choice(["s3", "fs", "object-store"]),
                                                "storage_size": -1, "memory_size": 8192,
                                                "registry_type": rng.choice(["aios", "external"])},
        }
        out.write(json.dumps(doc, separators=(",", ":")))
        out.write("\n")


if __name__ == "__main__":
    main()
