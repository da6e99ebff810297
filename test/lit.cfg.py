# lit configuration of attnc's FileCheck suites (test/Dialect, test/Conversion,
# test/tools, ...). Tools come from the build tree and LLVM 22.
import os
import lit.formats

config.name = "attnc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir", ".test"]
config.excludes = ["e2e", "unit", "gpu", "lit.cfg.py", "Inputs"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.attnc_obj_root, "test")

config.environment["PATH"] = os.pathsep.join(
    [config.attnc_tools_dir, config.llvm_tools_dir, config.environment.get("PATH", os.environ["PATH"])])
config.substitutions.append(("%python", config.python))
config.substitutions.append(("%src", config.attnc_src_root))

# ptxas (the CUDA toolkit's) assembles the GPU kernels' PTX into cubins; tests
# that need it are UNSUPPORTED without it.
import shutil
ptxas = os.environ.get("ATTNC_PTXAS") or shutil.which("ptxas") or (
    "/usr/local/cuda/bin/ptxas" if os.access("/usr/local/cuda/bin/ptxas", os.X_OK) else None)
if ptxas:
    config.available_features.add("ptxas")
    config.environment["ATTNC_PTXAS"] = ptxas
