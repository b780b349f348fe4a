/* pushy_shard.front._sendall: the fan-out loop's system calls without the interpreter.
 *
 * send_each(members, exclude, delivery) -> list
 *
 * For every connection of `members` (a dict sid -> connection) but `exclude`, the event's
 * frame of the connection's kind goes out in one send() on its socket, when that is exactly
 * what the connection's own write would do: the connection is not closed and its `_fd` is
 * a plain TCP socket whose transport holds no unsent bytes (the connection keeps it -1
 * otherwise: nothing can be overtaken, byte order stays as it is). Every other connection,
 * and every send that did not
 * take the whole frame, is left to Python: the result lists (connection, bytes already sent)
 * for each, in the members' order, and the caller finishes them with the connection's own
 * write (which buffers the rest, checks the slow-consumer bound, or meets the error the
 * transport then reports itself).
 *
 * Optional: the server runs the same loop in Python where this cannot be built (fanout.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <sys/socket.h>

#define KINDS 8

static PyObject *s_fd, *s_kind, *s_closed;

/* Where a connection type keeps `_fd`, `closed` and `kind`: the offsets of their slots, or
 * -1 where one is not a plain slot (a property, say) and is read as an attribute. Looked up
 * once per type per call: reading a slot directly costs a load, not an attribute lookup. */
typedef struct {
    PyTypeObject *type;
    Py_ssize_t fd, closed, kind;
} layout_t;

static Py_ssize_t slot_offset(PyTypeObject *type, PyObject *name) {
    PyObject *d = _PyType_Lookup(type, name); /* borrowed */
    if (!d || !Py_IS_TYPE(d, &PyMemberDescr_Type)) return -1;
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    return m->type == T_OBJECT_EX && !(m->flags & READONLY) ? m->offset : -1;
}

static void layout_for(PyTypeObject *type, layout_t *l) {
    l->type = type;
    l->fd = slot_offset(type, s_fd);
    l->closed = slot_offset(type, s_closed);
    l->kind = slot_offset(type, s_kind);
}

/* A new reference to attribute `name` of `conn`, from its slot where there is one; NULL
 * with AttributeError set where it has none. */
static PyObject *attribute(PyObject *conn, Py_ssize_t offset, PyObject *name) {
    if (offset < 0) return PyObject_GetAttr(conn, name);
    PyObject *v = *(PyObject **)((char *)conn + offset);
    if (!v) {
        PyErr_SetObject(PyExc_AttributeError, name);
        return NULL;
    }
    Py_INCREF(v);
    return v;
}

/* 1: plain and idle (its fd in *fd, its kind in *kind); 0: Python writes it; -1: error. */
static int eligible(PyObject *conn, layout_t *l, int *fd, long *kind) {
    if (Py_TYPE(conn) != l->type) layout_for(Py_TYPE(conn), l);
    PyObject *v = attribute(conn, l->fd, s_fd);
    if (!v) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
        PyErr_Clear(); /* not a socket connection (an HTTP session): Python's */
        return 0;
    }
    long f = PyLong_AsLong(v);
    Py_DECREF(v);
    if (f < 0) {
        if (PyErr_Occurred()) return -1;
        return 0;
    }
    v = attribute(conn, l->closed, s_closed);
    if (!v) return -1;
    int closed = PyObject_IsTrue(v);
    Py_DECREF(v);
    if (closed) return closed < 0 ? -1 : 0;
    v = attribute(conn, l->kind, s_kind);
    if (!v) return -1;
    *kind = PyLong_AsLong(v);
    Py_DECREF(v);
    if (*kind < 0 || *kind >= KINDS) return PyErr_Occurred() ? -1 : 0;
    *fd = (int)f;
    return 1;
}

static int leave_to_python(PyObject *out, PyObject *conn, Py_ssize_t sent) {
    PyObject *item = Py_BuildValue("(On)", conn, sent);
    if (!item) return -1;
    int rc = PyList_Append(out, item);
    Py_DECREF(item);
    return rc;
}

static PyObject *send_each(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3 || !PyDict_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "send_each(members: dict, exclude, delivery)");
        return NULL;
    }
    PyObject *members = args[0], *exclude = args[1], *delivery = args[2];
    PyObject *frames[KINDS] = {NULL};
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    layout_t layout = {NULL, -1, -1, -1};
    Py_ssize_t pos = 0;
    PyObject *sid, *conn;
    while (PyDict_Next(members, &pos, &sid, &conn)) {
        if (exclude != Py_None) {
            int same = PyObject_RichCompareBool(sid, exclude, Py_EQ);
            if (same < 0) goto fail;
            if (same) continue;
        }
        int fd = -1;
        long kind = 0;
        int ok = eligible(conn, &layout, &fd, &kind);
        if (ok < 0) goto fail;
        if (!ok) {
            if (leave_to_python(out, conn, 0) < 0) goto fail;
            continue;
        }
        if (!frames[kind]) {
            frames[kind] = PyObject_CallMethod(delivery, "frame", "l", kind);
            if (!frames[kind]) goto fail;
            if (!PyBytes_Check(frames[kind])) {
                PyErr_SetString(PyExc_TypeError, "Delivery.frame must return bytes");
                goto fail;
            }
        }
        const char *data = PyBytes_AS_STRING(frames[kind]);
        Py_ssize_t size = PyBytes_GET_SIZE(frames[kind]);
        ssize_t sent = send(fd, data, (size_t)size, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent == size) continue;
        /* partial, EAGAIN, or an error the transport will meet and report itself */
        if (leave_to_python(out, conn, sent > 0 ? sent : 0) < 0) goto fail;
    }
    for (int k = 0; k < KINDS; k++) Py_XDECREF(frames[k]);
    return out;
fail:
    for (int k = 0; k < KINDS; k++) Py_XDECREF(frames[k]);
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"send_each", (PyCFunction)(void (*)(void))send_each, METH_FASTCALL,
     "send_each(members, exclude, delivery) -> [(connection, bytes sent)] left to Python"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sendall", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sendall(void) {
    s_fd = PyUnicode_InternFromString("_fd");
    s_kind = PyUnicode_InternFromString("kind");
    s_closed = PyUnicode_InternFromString("closed");
    if (!s_fd || !s_kind || !s_closed) return NULL;
    return PyModule_Create(&module);
}
