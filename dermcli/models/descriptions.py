"""One paragraph per architecture for model cards, known without building the model or importing torch:
`dermcli report --card` runs on the light install, which has neither (registry.describe picks one)."""

CNN = ("The 7-class card's CNN on 28x28 RGB scaled to [0, 1]: four conv blocks (3x3 convs, padding 1) "
       "[3-32, pool, BN], [32-64-64, pool, BN], [64-128-128, pool, BN], [128-256-256, pool], then dropout 0.2 and "
       "fully connected 256-256-128-64-32 (ReLU + BatchNorm1d each) and a final linear layer. 1.3M parameters.")
RESNET50 = ("torchvision ResNet50 at 224x224 with the binary card's head: global average pool, BN(2048), dropout 0.5, "
            "linear 512 + ReLU, BN(512), dropout 0.5, linear 256 + ReLU, dropout 0.3, linear output (sigmoid for binary). "
            "24.7M parameters.")
ENSEMBLE = "An ensemble: the mean of its members' temperature-scaled probabilities (members listed below)."
FIXED = {"cnn": CNN, "resnet50": RESNET50, "ensemble": ENSEMBLE}


def timm_description(timm_name: str) -> str:
    return f"timm {timm_name}, built with num_classes=0 (pooled features), followed by dermcli's head."

