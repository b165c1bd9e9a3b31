"""Why request bytes are not a message: every string that is not UTF-8, by path.

grpc parses each request before the handler runs. When protobuf refuses the
bytes (a string field that is not UTF-8, which proto3 requires; a corrupt wire
format), grpc would answer UNKNOWN with the exception's class name, which tells
a client nothing it can fix. `explain` turns the bytes into an InvalidArgument
that names the offending fields, the way validation does for a parsed message
(`readings[3].reading.sensor`, `device.labels["site"]`).

To find those fields the bytes are parsed again with a twin of the request
type in which every string field is a bytes field: the same numbers and the
same wire type, so the parse succeeds and each former string can be checked.
Twins are built once per type, from the generated descriptors.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from google.protobuf.message import DecodeError, Message

from sensormesh_core.errors import FieldViolation, InvalidArgument

NOT_UTF8 = "is not valid UTF-8 (protobuf strings must be)"
_STRING = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
_BYTES = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES


def explain(message_class: type[Message] | None, raw: bytes) -> InvalidArgument:
    """The InvalidArgument for request bytes that `message_class` cannot parse."""
    if message_class is None:
        return InvalidArgument("the request is not a valid protobuf message")
    descriptor: Descriptor = message_class.DESCRIPTOR  # type: ignore[assignment]  # upb's class is the same
    try:
        twin = _twin(descriptor.full_name, descriptor.file.name)()
        twin.ParseFromString(raw)
    except DecodeError as error:
        reason = str(error).rsplit(": ", 1)[-1]  # "Wire format was corrupt"
        return InvalidArgument(f"the request is not a valid {descriptor.full_name} message: {reason}")
    found = _walk(descriptor, twin, "")
    if not found:
        return InvalidArgument(f"the request is not a valid {descriptor.full_name} message")
    fields = ", ".join(v.field for v in found[:5])
    return InvalidArgument(f"invalid {descriptor.name}: {fields}", found)


def _files_in_order(file: FileDescriptor, seen: dict[str, FileDescriptor]) -> None:
    """`file` and its imports, each after the files it imports."""
    for dependency in file.dependencies:
        _files_in_order(dependency, seen)
    seen.setdefault(file.name, file)


def _lenient(message: descriptor_pb2.DescriptorProto) -> None:
    """Strings become bytes; options go. A map's entries become plain repeated
    messages (map keys may not be bytes; the wire format is the same)."""
    message.ClearField("options")
    for field in message.field:
        field.ClearField("options")
        if field.type == _STRING:
            field.type = _BYTES
    for nested in message.nested_type:
        _lenient(nested)
    for enum in message.enum_type:
        enum.ClearField("options")


@cache
def _twin(full_name: str, file_name: str) -> type[Message]:
    """The type `full_name` (declared in `file_name`) with every string field as bytes."""
    files: dict[str, FileDescriptor] = {}
    _files_in_order(descriptor_pool.Default().FindFileByName(file_name), files)
    pool = descriptor_pool.DescriptorPool()
    for file in files.values():
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        proto.ClearField("options")
        proto.ClearField("service")
        proto.ClearField("extension")
        for message in proto.message_type:
            _lenient(message)
        for enum in proto.enum_type:
            enum.ClearField("options")
        pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


def _utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _walk(descriptor: Descriptor, twin: Message, path: str) -> list[FieldViolation]:
    """Violations for every former string of `twin` (typed as `descriptor`) that is not UTF-8."""
    found: list[FieldViolation] = []
    for field, value in twin.ListFields():
        original = descriptor.fields_by_name[field.name]
        name = f"{path}.{field.name}" if path else field.name
        if original.message_type is not None and original.message_type.GetOptions().map_entry:
            found += _walk_map(original.message_type, value, name)
        elif original.is_repeated:
            for index, item in enumerate(value):
                found += _check(original, item, f"{name}[{index}]")
        else:
            found += _check(original, value, name)
    return found


def _check(field: FieldDescriptor, value: Any, name: str) -> list[FieldViolation]:
    if field.type == FieldDescriptor.TYPE_STRING:
        return [] if _utf8(value) else [FieldViolation(name, NOT_UTF8)]
    if field.message_type is not None:
        return _walk(field.message_type, value, name)
    return []


def _walk_map(entry: Descriptor, entries: Any, name: str) -> list[FieldViolation]:
    found: list[FieldViolation] = []
    key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
    for item in entries:
        key, value = item.key, item.value
        if key_field.type == FieldDescriptor.TYPE_STRING and not _utf8(key):
            found.append(FieldViolation(name, f"a key {NOT_UTF8}"))
            continue
        shown = key.decode() if isinstance(key, bytes) else key
        subscript = f'{name}["{shown}"]' if isinstance(shown, str) else f"{name}[{shown}]"
        found += _check(value_field, value, subscript)
    return found
