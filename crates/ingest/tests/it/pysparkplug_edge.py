"""An independent Sparkplug B edge node (pysparkplug, PyPI) for the ingest's tests.

Usage: pysparkplug_edge.py HOST PORT GROUP EDGE T0_MS

Births a node with a String metric and a device `press` whose state `running` is
stamped T0 and whose good counter is 100, counts to 110, dies without a word (the
broker publishes its will, NDEATH), reconnects (NBIRTH with the next bdSeq, DBIRTH
re-sending the state still stamped T0 and the counter at 110), counts to 125, and
leaves without a death (a clean MQTT disconnect: the will is not sent).
"""

import sys
import time

import pysparkplug as psp

host, port, group, edge, t0 = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])


def good(value):
    return psp.Metric(
        timestamp=psp.get_current_timestamp(),
        name="Counters/Good",
        datatype=psp.DataType.UINT32,
        value=value,
    )


node = psp.EdgeNode(
    group,
    edge,
    metrics=[
        psp.Metric(
            timestamp=psp.get_current_timestamp(),
            name="Info/Firmware",
            datatype=psp.DataType.STRING,
            value="4.2.1",
        )
    ],
)
node.register(
    psp.Device(
        "press",
        metrics=[
            psp.Metric(timestamp=t0, name="Status/State", datatype=psp.DataType.STRING, value="running"),
            good(100),
        ],
    )
)
node.connect(host, port=port, blocking=False)
time.sleep(1.5)
node.update_device("press", [good(110)])
time.sleep(1.0)

# Die without a word: the broker publishes the will (NDEATH with this birth's bdSeq).
paho = node._client._client
paho.loop_stop()
paho.socket().close()
time.sleep(2.0)

node.connect(host, port=port, blocking=False)
time.sleep(1.5)
node.update_device("press", [good(125)])
time.sleep(1.0)
# A clean MQTT disconnect: no will, no NDEATH (the machine stays as it is).
paho.disconnect()
paho.loop_stop()
print("done", flush=True)
