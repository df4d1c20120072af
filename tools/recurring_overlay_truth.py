"""Does the band of tools/recurring_overlay.py act as a shortcut for the bundled model at all?

Per photo (the same 12 cuts, the same band): p(top-1) without the band, with it, whether the top-1
stayed, and the change of p(top-1) when the band rows are blurred (hard, Eq. 1 blur). Prints rows
and the mean; no file. Run: python tools/recurring_overlay_truth.py SKIMAGE_DATA_DIR
"""
import sys, tempfile, numpy as np
from pathlib import Path
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / 'tools')]
import audit_page_size, recurring_overlay as ro
from PIL import Image
from bbx.model import OnnxClassifier
from bbx.preprocess.image import load_rgb
from bbx.maths.perturb import Perturber, BlurSpec
from bbx.evaluation.insertion import hard_blur
sk = Path(sys.argv[1])
m=OnnxClassifier(ro.MODEL)
with tempfile.TemporaryDirectory() as t:
    t=Path(t); (t/'s').mkdir()
    for n in ro.COLOUR: Image.open(sk/n).convert('RGB').save(t/'s'/Path(n).with_suffix('.png').name)
    audit_page_size.SAMPLES=sorted((t/'s').glob('*.png'))
    photos=audit_page_size.synth_photos(t/'cut',12,np.random.default_rng(0))
    rng=np.random.default_rng(1)
    where=np.zeros((224,224),bool); where[176:200]=True
    out=[]
    for p in photos:
        v=m.prepare(load_rgb(p)); b=ro.band(v,(176,200),rng)
        pr=m.scores(np.stack([v,b])).probs; k=int(pr[0].argmax()); kb=int(pr[1].argmax())
        pb=m.scores(hard_blur(Perturber(b,blur_spec=BlurSpec()),where)[None]).probs[0]
        out.append((round(pr[0,k],3), round(pr[1,k],3), kb==k, round(pr[1,kb],3), round(pb[kb]-pr[1,kb],3)))
    for o in out: print(o)
    print('mean blur gain on band photos', np.mean([o[4] for o in out]))
