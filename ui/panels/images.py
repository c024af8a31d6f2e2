"""The run's pictures: the live preview while a sampler works, then the final images.

The preview shows the newest latent preview of the running node (already throttled by the run
controller); it is replaced by the final images when the run ends. Final images are thumbnails;
clicking one opens it full size in an `ImageViewer`, a plain window that scales the image to fit.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

THUMB = 128
_PATH_ROLE = Qt.ItemDataRole.UserRole
_NODE_ROLE = Qt.ItemDataRole.UserRole + 1


class _ScaledImage(QLabel):
    """A label that keeps its image scaled to its own size (smooth, aspect kept)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image = QImage()
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setMinimumSize(64, 64)

    def set_image(self, image: QImage) -> None:
        self._image = image
        self._rescale()

    def image(self) -> QImage:
        return self._image

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._image.isNull():
            self.clear()
            return
        pix = QPixmap.fromImage(self._image).scaled(
            self.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
        self.setPixmap(pix)


class ImageViewer(QDialog):
    """One image, as big as the window allows."""

    def __init__(self, image: QImage, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.view = _ScaledImage(self)
        self.view.set_image(image)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self.resize(min(max(image.width(), 256), 1024), min(max(image.height(), 256), 1024))


class ImagePanel(QWidget):
    imageActivated = Signal(str)  # path of the clicked image

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.preview = _ScaledImage(self)
        self.preview.setMinimumHeight(160)
        self.preview_caption = QLabel("", self)
        self.preview_caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.gallery = QListWidget(self)
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(THUMB, THUMB))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setSpacing(4)
        self.gallery.setUniformItemSizes(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.preview, 3)
        layout.addWidget(self.preview_caption)
        layout.addWidget(self.gallery, 2)
        self.gallery.itemClicked.connect(self._clicked)
        self.gallery.itemActivated.connect(self._clicked)
        self._images: dict[str, QImage] = {}
        self.viewer: ImageViewer | None = None

    # ---- live preview -------------------------------------------------------------------------------

    def show_preview(self, node_id: int, image: QImage) -> None:
        self.preview.set_image(image)
        self.preview_caption.setText(f"preview · node {node_id}")

    def clear_preview(self) -> None:
        self.preview.set_image(QImage())
        self.preview_caption.setText("")

    # ---- final images -------------------------------------------------------------------------------

    def clear_images(self) -> None:
        self.gallery.clear()
        self._images.clear()

    def add_images(self, node_id: int, images: list[tuple[Path, QImage]]) -> None:
        for path, image in images:
            key = str(path)
            if key in self._images:
                continue
            self._images[key] = image
            thumb = QPixmap.fromImage(image).scaled(
                THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
            item = QListWidgetItem(QIcon(thumb), Path(path).name)
            item.setData(_PATH_ROLE, key)
            item.setData(_NODE_ROLE, node_id)
            item.setToolTip(key)
            self.gallery.addItem(item)
        if images:  # the newest final image takes the preview's place
            self.preview.set_image(images[-1][1])
            self.preview_caption.setText(Path(images[-1][0]).name)

    def image_paths(self) -> list[str]:
        return [self.gallery.item(i).data(_PATH_ROLE) for i in range(self.gallery.count())]

    def open_viewer(self, path: str) -> ImageViewer | None:
        image = self._images.get(path)
        if image is None:
            return None
        if self.viewer is not None:
            self.viewer.close()
        self.viewer = ImageViewer(image, Path(path).name, self.window())
        self.viewer.show()
        return self.viewer

    def _clicked(self, item: QListWidgetItem) -> None:
        path = item.data(_PATH_ROLE)
        self.imageActivated.emit(path)
        self.open_viewer(path)
