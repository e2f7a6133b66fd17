"""The serialised form shared by every input spec and codec (:mod:`posekit.codec`)."""

__all__ = ['DictForm']


class DictForm:
    """Base of the codec-stage objects: ``to_dict()`` (defined by each class, with its ``type``)
    is the whole object. ``from_dict`` rebuilds it, equality and ``repr`` compare and show it."""

    kind = None

    def to_dict(self):
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        data.pop('type', None)
        return cls(**data)

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    __hash__ = None  # mutable, compared by value

    def __repr__(self):
        return '%s(%s)' % (type(self).__name__, self.to_dict())
