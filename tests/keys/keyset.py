"""A small, valid PHANGS-format key set written into a temp dir, for negative and property tests.

``MINIMAL`` maps file name -> content.  Line numbers matter to the tests: each file's
content starts on line 1 with the first line shown (no leading newline).
"""

from __future__ import annotations

from pathlib import Path

REFERENCE_KEYS = Path("/work/shared/reference/phangs-alma_keys")

MASTER = """\
# master key of the minimal test key set
key_dir            .
imaging_root       work/imaging
postprocess_root   work/postprocess
derived_root       work/derived
release_root       work/release
ms_root            uvdata
singledish_root    sd
cleanmask_root     masks
ms_key             ms_file_key.txt
singledish_key     singledish_key.txt
cleanmask_key      cleanmask_key.txt
distance_key       distance_key.txt
window_key         window_key.txt
config_key         config_definitions.txt
target_key         target_definitions.txt
moment_key         moment_key.txt
derived_key        derived_key.txt
imaging_key        imaging_recipes.txt
linmos_key         linearmosaic_definitions.txt
override_key       overrides.txt
dir_key            dir_key.txt
"""

TARGETS = """\
# target ra dec vsys vwidth
ngc0628     01h36m41.7s   +15d47m01s   657   254
ngc3627     11h20m15.0s   +12d59m30s   717   550
ngc3627_1   11h20m15.0s   +12d57m30s   717   550
ngc3627_2   11h20m15.0s   +13d01m30s   717   550
"""

LINMOS = """\
ngc3627   ngc3627_1
ngc3627   ngc3627_2
"""

DIRS = """\
ngc3627_1   ngc3627
ngc3627_2   ngc3627
"""

CONFIGS = """\
line_product    co21      {'line_tag':'co21','channel_kms':2.6,'statwt_edge_kms':50.0}
line_product    co21      {'fitorder':0, 'combinespw':False, 'lines_to_flag':['co21']}
cont_product    cont      {'freq_ranges_ghz':[[214.87,216.83],[229.49,230.40]],'lines_to_flag':['co','13co']}
interf_config   12m       {'array_tags':['12m'],'clean_scales_arcsec':[0,1,2.5,5.0]}
interf_config   12m+7m    {'array_tags':['12m','7m']}
interf_config   12m+7m    {'clean_scales_arcsec':[0,1,2.5,5.0,10.0]}
interf_config   7m        {'array_tags':['7m'],'clean_scales_arcsec':[0,5.0,10.0]}
feather_config  12m+7m+tp {'interf_config':'12m+7m'}
feather_config  7m+tp     {'interf_config':'7m'}
array_tag       7m        {'timebin':'10s'}
"""

MS = """\
ngc0628    2012.1.00650  all  7m   1  a/ngc0628_7m_1.ms
ngc0628    2012.1.00650  all  12m  1  a/ngc0628_12m_1.ms
ngc3627_1  2015.1.00956  all  7m   1  b/ngc3627_1_7m.ms
ngc3627_2  2015.1.00956  all  7m   1  b/ngc3627_2_7m.ms
ngc3627_2  2015.1.00956  all  12m  1  b/ngc3627_2_12m.ms
"""

IMAGING = """\
all      co21   all           cube.clean
all      cont   all           cont.clean
12m      co21   singlescale   cube.clean
"""

CUBE_CLEAN = """\
specmode           =  "cube"
gridder            =  "mosaic"
deconvolver        =  "multiscale"
robust             =  0.5
cell               =  ['0.25arcsec']
threshold          =  '0.0mJy/beam'   # placeholder
"""

CONT_CLEAN = """\
specmode           =  "mfs"
deconvolver        =  "mtmfs"
nterms             =  2
"""

SINGLEDISH = """\
ngc0628    co21   ngc0628_tp_co21.fits
ngc3627_2  co21   ngc3627_2_tp_co21.fits
"""

CLEANMASK = """\
ngc0628    all    ngc0628_mask.fits
"""

DERIVED = """\
all      all    noise_kw      {'spec_box':5,'iterations':3}
12m+7m   co21   ang_res       {'2as': 2.0, '7p5as': 7.5}
12m+7m   co21   phys_res      {'60pc':60.0,'90pc':90.0}
12m+7m   all    mask_configs  ['12m+7m+tp']
12m+7m   co21   moments       ['strictmom0','broadmom0']
"""

MOMENTS = """\
strictmom0   algorithm   mom0
strictmom0   mask        strictmask
strictmom0   ext         _strict_mom0
strictmom0   ext_error   _strict_emom0
strictmom0   round       1
strictmom0   kwargs      {}
broadmom0    algorithm   mom0
broadmom0    mask        broadmask
broadmom0    ext         _broad_mom0
broadmom0    kwargs      {'window': '12.5km/s'}
"""

DISTANCE = """\
# %ECSV 0.9
target,dist
ngc0628,9.84
ngc3627,11.32
"""

WINDOW = """\
# %ECSV 1.0
target,window,vfield_file
ngc0628,40.0,ngc0628_vfield.fits
"""

OVERRIDES = """\
ngc0628_12m+7m_co21   pblimit    0.75
ngc0628               cell       '0.2arcsec'
all                   robust     0.5
"""

MINIMAL: dict[str, str] = {
    "master_key.txt": MASTER,
    "target_definitions.txt": TARGETS,
    "linearmosaic_definitions.txt": LINMOS,
    "dir_key.txt": DIRS,
    "config_definitions.txt": CONFIGS,
    "ms_file_key.txt": MS,
    "imaging_recipes.txt": IMAGING,
    "cube.clean": CUBE_CLEAN,
    "cont.clean": CONT_CLEAN,
    "singledish_key.txt": SINGLEDISH,
    "cleanmask_key.txt": CLEANMASK,
    "derived_key.txt": DERIVED,
    "moment_key.txt": MOMENTS,
    "distance_key.txt": DISTANCE,
    "window_key.txt": WINDOW,
    "overrides.txt": OVERRIDES,
}

DATA_DIRS = ("work/imaging", "work/postprocess", "work/derived", "work/release", "uvdata", "sd", "masks")


def write_keyset(directory: Path, changes: dict[str, str | bytes | None] | None = None) -> Path:
    """Write the minimal key set (with ``changes``: name -> new content, or None to omit a file)."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | bytes | None] = dict(MINIMAL)
    files.update(changes or {})
    for name, content in files.items():
        if content is None:
            continue
        path = directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    for d in DATA_DIRS:
        (directory / d).mkdir(parents=True, exist_ok=True)
    return directory
