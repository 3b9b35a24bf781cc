from PIL import Image


def preprocess(raw):
    top = Image.fromarray(np.asarray(raw, np.uint8)[:84])  # rows 0-83: the dashboard is dropped
    return np.asarray(top.resize((64, 64), Image.BILINEAR))
