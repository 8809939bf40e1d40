"""The hand the generator draws: bone sizes, positions and joints of an upright right hand, as tables."""

# ----------------------------------------------------------------------------------------------------------
# Anatomy of an upright right hand (thumb on the image's left), in pixels of a 2048 x 2048 image at about
# 66 px per cm: the scale at which finger-16 is ~3,900 px and Pisiform ~4,300 px as in the real data.
# Hand frame: origin at the wrist pivot (centre of the radiocarpal joint), x towards the little finger,
# y down the forearm (image axes). Angles in degrees: 0 points to the fingertips, + leans to the little finger.
# ----------------------------------------------------------------------------------------------------------
REF_SIZE = 2048

# Where the wrist pivot sits in an unposed 2048 image: puts the mean carpal box near the real one.
PIVOT_XY = (935.0, 1380.0)

# A wrist turned towards the thumb rolls on the radial styloid, one turned towards the little finger on the
# ulnar side, so the proximal carpal row slides along the radius instead of sinking into it: the bend centre
# for negative and positive wrist angles (hand frame, reference px).
BEND_CENTRES = ((-100.0, -40.0), (90.0, -40.0))

# Joint space between consecutive bones of a ray (about 2 mm).
JOINT_GAP = 14.0

# Finger rays, thumb first: (classes base -> tip, base point (x, y), direction, bones base -> tip as
# (length, base half-width, shaft half-width, head half-width)). Lengths follow adult hand anatomy.
RAYS = (
    (("finger-3", "finger-2", "finger-1"), (-162, -218), -40.0,
     ((300, 40, 26, 36), (205, 38, 24, 31), (150, 33, 20, 25))),
    (("finger-7", "finger-6", "finger-5", "finger-4"), (-66, -241), -8.0,
     ((435, 39, 26, 39), (258, 40, 26, 34), (158, 33, 21, 27), (124, 31, 17, 21))),
    (("finger-11", "finger-10", "finger-9", "finger-8"), (0, -244), 0.0,
     ((422, 41, 27, 40), (284, 41, 27, 35), (185, 34, 22, 28), (130, 32, 17, 21))),
    (("finger-15", "finger-14", "finger-13", "finger-12"), (64, -232), 7.0,
     ((376, 35, 23, 36), (264, 38, 25, 32), (172, 31, 20, 26), (124, 30, 16, 20))),
    (("finger-19", "finger-18", "finger-17", "finger-16"), (120, -209), 16.0,
     ((350, 34, 22, 34), (211, 34, 22, 28), (125, 27, 17, 22), (112, 28, 15, 18))),
)

# Depth of a bone's rounded ends as a fraction of the end's half-width: (base, head). Metacarpal heads are
# round, phalangeal bases flat (concave in reality), distal phalanges end in a tuft.
CAPS = {"metacarpal": (0.3, 0.9), "phalanx": (0.3, 0.55), "distal": (0.3, 0.8)}

# Carpal bones: (centre x, y, half-length along the axis, half-width, axis direction, superellipse exponent:
# 2 is an ellipse, larger is boxier). Positions make the articulations of the contract: MC1 on Trapezium, MC2
# on Trapezoid, MC3 on Capitate, MC4/MC5 on Hamate; Pisiform over Triquetrum, Trapezium over Trapezoid.
CARPAL_SHAPES = {
    "Trapezium": (-125, -186, 50, 42, -35.0, 2.3),
    "Trapezoid": (-85, -209, 42, 37, -5.0, 2.6),
    "Capitate": (-5, -172, 78, 50, 0.0, 2.6),
    "Hamate": (76, -172, 64, 48, 15.0, 2.4),
    "Scaphoid": (-104, -84, 85, 40, -55.0, 2.2),
    "Lunate": (-5, -54, 48, 52, 0.0, 2.2),
    "Triquetrum": (88, -80, 48, 40, 55.0, 2.3),
    "Pisiform": (108, -71, 38, 37, 20.0, 2.0),
}

# Forearm bones, distal end up: (centre x of the shaft, y of the distal end, length, shaft half-width,
# distal half-width, flare length, sideways shift of the distal end, tilt of the distal surface (+: the thumb
# side reaches further), depth of the distal cap). Both are long enough to leave the image at any pose.
# Radius: wide distal end flaring to the thumb side, its styloid reaching furthest (radial inclination).
# Ulna: narrower, ending short of the radius (ulnar variance), its styloid on the little-finger side.
FOREARM_SHAPES = {
    "Radius": (-40, -24, 2000, 46, 98, 300, -12, 12.0, 0.2),
    "Ulna": (62, 28, 2000, 34, 46, 220, 5, -15.0, 0.5),
}



# The order in which the carpal bones ossify in childhood (capitate and hamate in the first months, the
# pisiform around ten years): a child's film shows a prefix of this list, the rest is still cartilage.
OSSIFICATION_ORDER = ("Capitate", "Hamate", "Triquetrum", "Lunate", "Trapezium", "Trapezoid", "Scaphoid", "Pisiform")
