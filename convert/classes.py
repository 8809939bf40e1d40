"""The 29 class names in competition order: the one list every stage imports."""

FINGERS = tuple(f"finger-{i}" for i in range(1, 20))
CARPALS = ("Trapezium", "Trapezoid", "Capitate", "Hamate", "Scaphoid", "Lunate", "Triquetrum", "Pisiform")
FOREARM = ("Radius", "Ulna")

CLASSES = FINGERS + CARPALS + FOREARM
NUM_CLASSES = len(CLASSES)
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}
CARPAL_INDICES = tuple(CLASS_INDEX[name] for name in CARPALS)

# Stage 1's YOLO set carries one more class after the 29: the carpal region (THE region rule on the labels), which
# the detector finds as one large object. It never becomes a mask, a score or a submission row.
REGION_CLASS = "carpal_region"
REGION_CLASS_ID = NUM_CLASSES

assert NUM_CLASSES == 29 and CARPAL_INDICES == tuple(range(19, 27))
