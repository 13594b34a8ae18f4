"""The artifact: a self-contained folder that runs on the device with the runtime and numpy only.

    artifact.py  writes the folder (harness, manifest, README) and reads manifests back
    samples.py   sample inputs that follow each input's shape, dtype and role; reference outputs
    policy.py    how outputs are judged by default, per precision
    harness/     what every artifact carries as edgec_harness/: the manifest's types, the
                 interface conversion, the comparison, Session and the runtime adapters
"""
