"""The artifact's harness, shipped inside every artifact as the package `edgec_harness/`.

It needs numpy and the runtime only, and its modules import each other relatively, so the
same files work as `edgec.package.harness` on the build machine and as `edgec_harness` on a
device. The build writes manifests, converts samples and judges outputs with these very
modules, so the build and `run.py` share one definition of the artifact:

    errors     the exit-code table and the harness's one-line errors
    manifest   the manifest's types (schema version, tensor specs, policies), JSON in and out
    interface  moving data into and out of the artifact's interface; splitting it into runs
    compare    measuring outputs against a reference under a comparison policy
    session    `Session`, the base class of every runtime adapter (rt_*.py)
    commands   verify, infer, bench and profile
"""
