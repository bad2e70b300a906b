"""The published CHAIR object vocabulary: words and phrases -> the 80 COCO categories (data only).

Transcribed from ``data/synonyms.txt`` of the CHAIR reference (LisaAnne/Hallucination, Rohrbach et al.,
2018, "Object Hallucination in Image Captioning"): one line per COCO category, its name first, then the
words and phrases that name it. Duplicates within a line are dropped and stray spaces stripped; nothing
else is changed, so CHAIR numbers stay comparable with the paper's.

``PHRASE_RULES`` are the reference's hand-written rules for two-word phrases: a phrase maps to the
category it names, or to ``None`` when it names no COCO object ("train track" is not a train, "home
plate" not a plate); qualifiers that would fire a wrong category ("baby bird" is a bird, not a person).
"""

from __future__ import annotations

# category name -> every word or phrase naming it (the category name itself included, first)
SYNONYMS: dict[str, tuple[str, ...]] = {
    'person': (
        'person', 'girl', 'boy', 'man', 'woman', 'kid', 'child', 'chef', 'baker', 'people', 'adult', 'rider',
        'children', 'baby', 'worker', 'passenger', 'sister', 'biker', 'policeman', 'cop', 'officer', 'lady',
        'cowboy', 'bride', 'groom', 'male', 'female', 'guy', 'traveler', 'mother', 'father', 'gentleman',
        'pitcher', 'player', 'skier', 'snowboarder', 'skater', 'skateboarder', 'foreigner', 'caller',
        'offender', 'coworker', 'trespasser', 'patient', 'politician', 'soldier', 'grandchild', 'serviceman',
        'walker', 'drinker', 'doctor', 'bicyclist', 'thief', 'buyer', 'teenager', 'student', 'camper',
        'driver', 'solider', 'hunter', 'shopper', 'villager',
    ),
    'bicycle': ('bicycle', 'bike', 'unicycle', 'minibike', 'trike',),
    'car': (
        'car', 'automobile', 'van', 'minivan', 'sedan', 'suv', 'hatchback', 'cab', 'jeep', 'coupe', 'taxicab',
        'limo', 'taxi',
    ),
    'motorcycle': ('motorcycle', 'scooter', 'motor bike', 'motor cycle', 'motorbike', 'moped',),
    'airplane': (
        'airplane', 'jetliner', 'plane', 'air plane', 'monoplane', 'aircraft', 'jet', 'airbus', 'biplane',
        'seaplane',
    ),
    'bus': ('bus', 'minibus', 'trolley',),
    'train': ('train', 'locomotive', 'tramway', 'caboose',),
    'truck': ('truck', 'pickup', 'lorry', 'hauler', 'firetruck',),
    'boat': (
        'boat', 'ship', 'liner', 'sailboat', 'motorboat', 'dinghy', 'powerboat', 'speedboat', 'canoe',
        'skiff', 'yacht', 'kayak', 'catamaran', 'pontoon', 'houseboat', 'vessel', 'rowboat', 'trawler',
        'ferryboat', 'watercraft', 'tugboat', 'schooner', 'barge', 'ferry', 'sailboard', 'paddleboat',
        'lifeboat', 'freighter', 'steamboat', 'riverboat', 'battleship', 'steamship',
    ),
    'traffic light': (
        'traffic light', 'street light', 'traffic signal', 'stop light', 'streetlight', 'stoplight',
    ),
    'fire hydrant': ('fire hydrant', 'hydrant',),
    'stop sign': ('stop sign',),
    'parking meter': ('parking meter',),
    'bench': ('bench', 'pew',),
    'bird': (
        'bird', 'ostrich', 'owl', 'seagull', 'goose', 'duck', 'parakeet', 'falcon', 'robin', 'pelican',
        'waterfowl', 'heron', 'hummingbird', 'mallard', 'finch', 'pigeon', 'sparrow', 'seabird', 'osprey',
        'blackbird', 'fowl', 'shorebird', 'woodpecker', 'egret', 'chickadee', 'quail', 'bluebird',
        'kingfisher', 'buzzard', 'willet', 'gull', 'swan', 'bluejay', 'flamingo', 'cormorant', 'parrot',
        'loon', 'gosling', 'waterbird', 'pheasant', 'rooster', 'sandpiper', 'crow', 'raven', 'turkey',
        'oriole', 'cowbird', 'warbler', 'magpie', 'peacock', 'cockatiel', 'lorikeet', 'puffin', 'vulture',
        'condor', 'macaw', 'peafowl', 'cockatoo', 'songbird',
    ),
    'cat': ('cat', 'kitten', 'feline', 'tabby',),
    'dog': (
        'dog', 'puppy', 'beagle', 'pup', 'chihuahua', 'schnauzer', 'dachshund', 'rottweiler', 'canine',
        'pitbull', 'collie', 'pug', 'terrier', 'poodle', 'labrador', 'doggie', 'doberman', 'mutt', 'doggy',
        'spaniel', 'bulldog', 'sheepdog', 'weimaraner', 'corgi', 'cocker', 'greyhound', 'retriever',
        'brindle', 'hound', 'whippet', 'husky',
    ),
    'horse': (
        'horse', 'colt', 'pony', 'racehorse', 'stallion', 'equine', 'mare', 'foal', 'palomino', 'mustang',
        'clydesdale', 'bronc', 'bronco',
    ),
    'sheep': ('sheep', 'lamb', 'ram', 'goat', 'ewe',),
    'cow': ('cow', 'cattle', 'oxen', 'ox', 'calf', 'holstein', 'heifer', 'buffalo', 'bull', 'zebu', 'bison',),
    'elephant': ('elephant',),
    'bear': ('bear', 'panda',),
    'zebra': ('zebra',),
    'giraffe': ('giraffe',),
    'backpack': ('backpack', 'knapsack',),
    'umbrella': ('umbrella',),
    'handbag': ('handbag', 'wallet', 'purse', 'briefcase',),
    'tie': ('tie', 'bow', 'bow tie',),
    'suitcase': ('suitcase', 'suit case', 'luggage',),
    'frisbee': ('frisbee',),
    'skis': ('skis', 'ski',),
    'snowboard': ('snowboard',),
    'sports ball': ('sports ball', 'ball',),
    'kite': ('kite',),
    'baseball bat': ('baseball bat',),
    'baseball glove': ('baseball glove',),
    'skateboard': ('skateboard',),
    'surfboard': ('surfboard', 'longboard', 'skimboard', 'shortboard', 'wakeboard',),
    'tennis racket': ('tennis racket', 'racket',),
    'bottle': ('bottle',),
    'wine glass': ('wine glass',),
    'cup': ('cup',),
    'fork': ('fork',),
    'knife': ('knife', 'pocketknife', 'knive',),
    'spoon': ('spoon',),
    'bowl': ('bowl', 'container',),
    'banana': ('banana',),
    'apple': ('apple',),
    'sandwich': ('sandwich', 'burger', 'sub', 'cheeseburger', 'hamburger',),
    'orange': ('orange',),
    'broccoli': ('broccoli',),
    'carrot': ('carrot',),
    'hot dog': ('hot dog',),
    'pizza': ('pizza',),
    'donut': ('donut', 'doughnut', 'bagel',),
    'cake': ('cake', 'cheesecake', 'cupcake', 'shortcake', 'coffeecake', 'pancake',),
    'chair': ('chair', 'seat', 'stool',),
    'couch': ('couch', 'sofa', 'recliner', 'futon', 'loveseat', 'settee', 'chesterfield',),
    'potted plant': ('potted plant', 'houseplant',),
    'bed': ('bed',),
    'dining table': ('dining table', 'table', 'desk',),
    'toilet': ('toilet', 'urinal', 'commode', 'lavatory', 'potty',),
    'tv': ('tv', 'monitor', 'televison', 'television',),
    'laptop': ('laptop', 'computer', 'notebook', 'netbook', 'lenovo', 'macbook', 'laptop computer',),
    'mouse': ('mouse',),
    'remote': ('remote',),
    'keyboard': ('keyboard',),
    'cell phone': (
        'cell phone', 'mobile phone', 'phone', 'cellphone', 'telephone', 'phon', 'smartphone', 'iPhone',
    ),
    'microwave': ('microwave',),
    'oven': ('oven', 'stovetop', 'stove', 'stove top oven',),
    'toaster': ('toaster',),
    'sink': ('sink',),
    'refrigerator': ('refrigerator', 'fridge', 'freezer',),
    'book': ('book',),
    'clock': ('clock',),
    'vase': ('vase',),
    'scissors': ('scissors',),
    'teddy bear': ('teddy bear', 'teddybear',),
    'hair drier': ('hair drier', 'hairdryer',),
    'toothbrush': ('toothbrush',),
}

# Two-word phrases read as one unit before single words (the reference's rules). A value is the COCO
# category's synonym the phrase stands for, or None: the phrase names no COCO object.
_ANIMALS = (
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub",
)
PHRASE_RULES: dict[str, str | None] = {
    **{f"{qualifier} {animal}": animal for animal in _ANIMALS for qualifier in ("baby", "adult")},
    "passenger jet": "jet",
    "passenger train": "train",
    "bow tie": "tie",
    "toilet seat": "toilet",
    "home plate": None,  # baseball's home plate, not a plate
    "train track": None,  # rails, not a train
}
