"""basicsr 1.4.2 imports a module that torchvision removed; `import pisasr` makes it importable."""

import subprocess
import sys


def test_basicsr_functions_used_by_pisasr_import():
    from basicsr.data.degradations import (  # noqa: F401
        circular_lowpass_kernel,
        random_add_gaussian_noise_pt,
        random_add_poisson_noise_pt,
        random_mixed_kernels,
    )
    from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim  # noqa: F401
    from basicsr.utils import DiffJPEG  # noqa: F401
    from basicsr.utils.img_process_util import filter2D  # noqa: F401

    import pisasr  # noqa: F401


def test_fresh_process_needs_only_import_pisasr_first():
    code = "import pisasr.data.degradation, basicsr; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    bare = subprocess.run([sys.executable, "-c", "import basicsr"], capture_output=True, text=True)
    assert bare.returncode != 0 and "functional_tensor" in bare.stderr  # the shim is what makes it work
