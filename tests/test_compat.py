"""basicsr 1.4.2 imports a module that torchvision removed; pisasr.compat makes it importable."""


def test_basicsr_functions_used_by_pisasr_import():
    from pisasr.compat import basicsr  # noqa: F401, I001  (must come first: it makes basicsr importable)
    from basicsr.data.degradations import (  # noqa: F401
        circular_lowpass_kernel,
        random_add_gaussian_noise_pt,
        random_add_poisson_noise_pt,
        random_mixed_kernels,
    )
    from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim  # noqa: F401
    from basicsr.utils import DiffJPEG  # noqa: F401
    from basicsr.utils.img_process_util import filter2D  # noqa: F401
