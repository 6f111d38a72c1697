"""The code books of ggml's importance-matrix quantisations (IQ1_S/IQ1_M, IQ2_*, IQ3_*), as data.

Each IQ type stores, per group of 4 or 8 weights, an index into a fixed grid of points; the grids are
ggml's `iq1s_grid`, `iq2xxs_grid`, `iq2xs_grid`, `iq2s_grid`, `iq3xxs_grid` and `iq3s_grid`
(ggml/src/ggml-common.h), lists of 8-byte (IQ1/IQ2) or 4-byte (IQ3) points whose coordinates take only a
few values. They cannot be computed, only copied, so each is held here in a compact form: the position of
every coordinate in the grid's short list of values (`levels`), one byte per coordinate, zlib-compressed
and base64-encoded. `grid(name)` decodes a table once, on first use, into float32 coordinates.

The encoded bytes were produced from the tables the `gguf` package ships (gguf-py `quants.py`, itself
generated from ggml-common.h); `tests/formats/test_gguf_iquants.py` checks every decoded table against
that package, point for point.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class _Grid:
    """One code book: ggml's name for it, (points, coordinates), the coordinate values, and the data."""

    ggml_name: str
    shape: tuple[int, int]
    levels: tuple[int, ...]
    encoded: str


_GRIDS: dict[str, _Grid] = {
    "IQ2_XXS": _Grid(
        "iq2xxs_grid",
        (256, 8),
        (8, 25, 43),
        "eNqFVYuS7SAMEv7/o3cNEGOvc/fM6djamAeQdC396BW4N+gVC08DfgzpFcsHvgepFb832ublkFmZZzmEr69j4BMgjnk7Phdz"
        "X44xnY8A2Ba1xysgE5ipjPAR2gftx8/kTJBJlEmY2keVss0xkcIGCEqDL+R+H+k4s+DE6CvBSRehEqsKOjs6mwmUY5cBj4sy"
        "G9B8gYzz85JPYIG/ABbDgmUCTlkgQL8BlnsbPQDnhnkAniuROvWFi4CKNIgQR2VcyqvIg5DulqgckQwxpU+vks0kZGr3SKyh"
        "PERVsYLrEIcVqKm1lDYJdUfslyJ2K6qR/YdoYxHxdOx1dQGs5oDXDB2B4CMU5xr5mwXA67rkW3FGVSWUS1B8CwuUIqKhuhsC"
        "i1L6xKfDJcrR6UpAedPtajvBeMHZPdcav+E5AmaErG6Jqou+4144wqH3WoYCX1oA5mQRJI5bgqchL2wkvf81Ank1hGJRf2ka"
        "s0GATKwBvhqFeu5JNj87+Zx0AlFsM5JeXN3Va47KZsyS0ZCdGuQ1AXssGAXPXTp7+sOSNmZGkWbUozHda9G6p6ahrX16xse4"
        "GDDtUqCAQthyVvtUf3Vd/mHOgPbUoSToKluRP+WDBQc=",
    ),
    "IQ2_XS": _Grid(
        "iq2xs_grid",
        (512, 8),
        (8, 25, 43),
        "eNp1V4GW5DAICvz/R89UwWja7L6et502UQTMrJU/VATmDSpiYTxARXC+QEVgLoClBbQQFf+PjYWpCMyNsPi5IRX/T40EsDAS"
        "+b82EoIuJ0bF56meKBWfdHriVMTiZyFUfF7rhWHhu0BSn6vQS8G+noc7AFj4BAJLQByAPNt3QP7/kA2T1ZPxIg0wKkYVDcDY"
        "/QNIKgaMDVgsDIB5AO2tbkAbC18GHgufDXDKZyOQO1dDXNLZkIdGvTF0gxCUqEa5N87JFxUNytnI6Ao3lK/G8mQ6metmNPS3"
        "xquEFWUMRXAQ4b8NdT8ihopRmICTMG4WMAmEwcZNJJcKTGJhdGsTjCQ6pW6EM3TAJKB/TyL6zouQRUREpKLfdMq8EpWDsG6l"
        "uWkOOIOTyM7IxcRindiRzia4M78SvQgetcR6bJWexOcpAMSL+VETglMhCiGERz70acIwdZ3y6twrt30Lx0hfhZOsrQ5cBcSM"
        "wBSSf09BuZOnsEB+CiwRijcjIgEpJjAxei4OAXYT5jaLaFp+zszMAg2FarJRj1NY7gryT73FzcQ1h4uHQQnclWOO32LwKXwj"
        "hDkWoS2L8acxQO6JOcZeRuGbmGOmlHMaCOYYeBkJxObsyFbcaSxUxLTXMhqjgWlzpVxngWlbldvdkKbSXwaFIfdHa13GSQmt"
        "3Q0MU2avCQuod0iZsExg1ZboGSbdQ+y6vxrNShmY9KnUX0ZIDge7GSMmzAV2rrwNkucJQMgx1VDOeBon5jbJ1yxji7IbK6tK"
        "6m+i/Wdlg5ATrBkxfOjJ4WJjRpqEPFT1UPV8LHQ1cOVOn17SBDXdm7GHZ4WV6GgQjC+XoA2+yJzajQqQjAP2WTZMPxKkyLly"
        "dgNyPj0zv2b4a0UNChd2DgwfTlzwbXDYWW2OerEAsgJ4GTAbQBwDh2PwsPbqrrsBPgeTNq7Ob/fQMSOHzx5cUmQKLWdvIEz3"
        "tAbZSso5i3x61QTxqNMwsQl6vCx/klFMoZArQtwGowpi2adsMsup00YxI/feA9RML4exjFMrSdC8H0tQMdkpi2MwLiiWYkdJ"
        "cOlD045rj/xGq2otOVusNtSKsVo7QZtsq0jA82S9v2qhCSSSzJxDGe5EP9yzLaGJXlein0fRPHIRbfDrsTqR+ecHQwYLBw==",
    ),
    "IQ2_S": _Grid(
        "iq2s_grid",
        (1024, 8),
        (8, 25, 43),
        "eNqFmQF25DAIQy3uf+g2Nh8jZtLuvjy220lig5CEZ63zJzJK/h+RUUv2gcio8Bsio+QP0MoH5IMi4+/H7MGRUfIXaYW9MDIq"
        "fAGR8fcuW5CWvi7s98dzX+TPebHgyPjc1TcQGZ9l9g1pxdeNRcbn432jWrINR0aFJ0DKRET+vDIhIzGRUcq44muiuJ6H9cRp"
        "6WsCn/REpqUnNDI+2+0JfrbRE/087jzHEx/rJF49+WyOl7WCRMadnVagvdpWqMi439IKFxl32VohI6OWrLCRcae/FToy7jS3"
        "pQGAyKhwQOy0nHXnViLvCwMMteECQJFRSwaoyLiX0wC2X6eTeLXUAbzIuD/WgBgZJQemVnwFaGSUErCRPy99BTClo9ZcCge2"
        "5ACXHOhacsAnM+xU/dEAYJ7ccgGS1TcV+fLWKBvdcfoioafeQJFxV7k1VGTc2YzMXuRuI3fZGm//NrKtInmqQX02ZGTcsG0N"
        "uuHYGnTDJRImkXCwxg31VtoLaw2tJWvsWGENHqPRn7t7Ky4jL9UelrGoCqyARcZCysVdgqAUkhOGDP2gGHReIonVUQWKLnUs"
        "q9YlHMmJR5mlSUBARHJCIqf8haAi46GZS1iR8dDJJTDuJAWR8dDAJbbIeNr7Eh1vnIQHpE87XgJkZRAhKyT1YJKaHtjfHUyC"
        "PLC9O4Mw2eEbYdJicCI9TEZWJydIpBErTQHBksHVN12Lu8QbGU8aLxGT+UnIUAC3njTcCk3CpmKrcSG93Ymc3HJB7FR6EjwU"
        "xNIhfBAxiR+EvAkAW4czQdIUBJD1JgwPv3Xk0ZqhZjaacLBXLpC6epPGLclOVEPyFZgwZBcVNEpWKymaQAdMYaIjpkA9KnSe"
        "F38K1ZPcLlhIAlBCi+i41UW3XOAVNsg+0nXRoVPwACWgmMJ31OcKYKQA0uFTCOn1wuJyQUTiqiWWvgoklupNKEuD8u9ZaKRv"
        "jZSYLqT5idrS+SRMBLWHmrltgktPYVoQ+7ruGy/5NoGGTKZQn+R3wXZnDUVQAphyCjrMOYU9dttegceKXqGXCb42XK/wFzWt"
        "ZkYbM09jcJN8foC5Sxp3OuJ0R/cOYBXjcB+xo3wsZQxl6CiDQUXlYyS9Vcqx3OSUEQEJ8vEO8SnFWU6KkFoZF5BUZODjVhka"
        "ikUxSGYly8eikgZaTz7GoOJzTEF1VVjxsaKoTj42FPLl40Ap6zRUdAhsC7vK7XsZLbkNr63RYdIwYDI7XNJIF8ntbRk0uY0t"
        "gwYa5HazoCq3k6VlcptYnS+3g5Xj5bauWnm5XcOelRGU264yhDDLsFfTTpVRlNujkjC5/Smmktua4uxpLKmB3H7UI6bh3Grf"
        "nNObAYUh5TJfS5rGVC7PrQU20La6dmdGJuXyWIyMR8JD4OSmwQV7Q+6mvN0TghcjDPPL5aVSXsXJRcrl4OOkIWl80veroUZx"
        "5DRZpV5Oc5PWSmvlNFZcspyWJg3VluT0UqZtGngUEfOAtZDTQJH18rYtkljejgVaQCZvq0oGL5G3R11zQJDD92NQkMOsWmkO"
        "DnJYVO4egeuDhLx8ZUnlZSnoyNNdnmwOHrCcPD215zmQyLfzMZiAGvlrizrmwCL/9cfgwj/mABNbkT8HGZwRN2JBecAcdHjg"
        "HHjOMHNNOS/6bwDarva8P/pAxAKXnX7fAYlWZ+HMNGxgDk5sCC5iY+8DlZ/MYVJIAKJMIubARWLeBi/tLX0dwJprzYS0wYzE"
        "MhKQ4DmokfC3gY1CvA1uWFSKBKVWNU7HVSFLadLacO9OXRv0tpeN40l6wZd//cLXLTUIAgQog6UwqxWSl31dUYMi3ABgwCo1"
        "4ZoAQiEBEkqJuVp+nF5Ao7QArsTLj7ULiJAcgKTpuQpcWeQj53dQpUPzeLaADKUC6FLw1BAAvvpI3gC/umS2BgCyNMLyY71q"
        "DDSfBikuzCWytzso+wkyakpDoXY0VklEbpVGexusI5uK4s9BW6fbPgbuQs2yY4Nq3NptrpJJkIYux5NmYZNgGxcPhx4O9CPl"
        "MALAMTG+LR/PiiDeBnkmUYiDlUEgc9AHc28D/yQapBnCmYN/2t8iorcDAJhi9S8tr/2qTEJg86AAQns7MDiHAZfw/jtAgAgh"
        "mzib37TYiXEeMMRJZc24OtWs4TtXUScCSYt1AAHB8q0tdFbfUuaXEBDvPKgoKB1mKHN6Uhn3O0mOHFY/JYo8JeLmebpx/wnB"
        "vx14HKTFvbKsJSWZhqgvX+uM6rxeZ4TJHq0jrPqYr7YtLT+Wf34AJIcXFw==",
    ),
    "IQ3_XXS": _Grid(
        "iq3xxs_grid",
        (256, 4),
        (4, 12, 20, 28, 36, 44, 52, 62),
        "eNpFkwsOBCEIQ/lz/xvvK06yYxpdV6GUamYWoIC7WYL1txnAk5k/c80aOCOBDgfwcOt4FwN4uVX/g2gUcH8BA3iGJVjgzQx6"
        "4yIvUNIAHaw3CV1MZVXMXXApzhfnm/NNXtBtnWM1w/21AgOy1nz2GOejL8qiIxpXDGm8wBfyihNjfSoy4i3ESrc1tGnJal/x"
        "8QngmT4FhjUsGliDaC8wiOPb7A8hEKmeUFLHn4QnmqSaeEnR/xKLKvROTDHQUOok1AI0P5F13S/6E1wfWtOIQKZHXNWXvyYU"
        "6CxkBKi+QUer2Vdnl70NtIyuV6xd5a9otRLNsoe9r3nxNVCjSDJApbF5akOBhGCfYPpoFG0t9ujEdbJh3NkNM5/USETNxBAj"
        "N5xy1ckMsAB0schilriSMAyYwBL8JkEXdDjijZOmqFA7fabCSSUHhFyQmo2GfQbDpSOEQ4fbfuyfUJSugYMgXNiYsFtydHvK"
        "lIOqe2JWGFltBtTIAD4a9InfgYJX4YidLtKsV7TtdVivATLLM5ShX2NgCK8zvNyoZGKmFwuBlWA2SQopU/eK9drwIpLM/gB6"
        "AApr",
    ),
    "IQ3_S": _Grid(
        "iq3s_grid",
        (512, 4),
        (1, 3, 5, 7, 9, 11, 13, 15),
        "eNpFlQmOhTAMQ5v9/jee54TRF7IKpWSzE957z4CDAvNuw4CDBP0dMFAggudkCxQYYHwcMtDsA8NQgvkM6nKQn3ED9TkJMMCC"
        "PZA4NZwW8Dnn+rrAfIEEaGDOvisofwk8eQYDjGBDAQ+rwGUW+CUBj+fASCZAg0z2i30wzbvh7FyyYfkGGEkn8CDpZB/YVwRF"
        "mKqiEyloEBTFsoipOMJeszesXGaNXdZoPmGdXgaUZYoJ5x40iOC52K8rqB0dll9x7cpnBeYrNmVRukZapnRwb7iXW8PkEmF3"
        "RFtrJYE598F+3IaIcpE1nJsjTVeBAQRpCVxEpluAKu6bvTljqiBZbJS6OGwDSIz4eE4YbZ6Ht6iOSmI598IgsfCMMFriKHbr"
        "AlPGYRcgZGOW++Lem5gaH6zZfNebAMxuhRQ5wVkFa/JMYoh1xWarDrEoBk58yjLXqpLnPUBSEpVkRKgrCa+Tgeh36FzBQp3X"
        "J1zR8jZ7eecZa6Vikr5K4PkVFhO57OsELgAa94krNrr2ASToOdcAOlDqJov9IkVIhKNvDhFxhXcfSShpm0WnCBzJQ1pyT+PU"
        "SOFERQORCD5poix8so4aqvHVq0wK51WsLbWLbCru13BBYGh2g7NlWgzxxi5Yu9YL2o0wtpViJBS1Tf8Eoy5FtiEl2Ga0EqFp"
        "SRRKe66hpUCxoYt0ad4T2Fv14H4rEYpsPUt4HMQnXVrcj8LJFSOq2aKZLBUd1BkJNKHQHL6KqrASfWZFy8Cw0mmWJ2S0Rjyz"
        "rKGzHSSaGiIANVDtpwpBAtnkjg61vSYXo3NbcYMR42qhUsRqiOIeSJKhKYx0kExKPRE3oKAJ+XM/vlNKTaRkpFIRrpIQ8Q4x"
        "hcInOWKAW5vciTVqNJL3pgDqvOhkgOGPSWazbMEx8WjaEv125o7jHYRY4w3PGOs+g2pYFbA0nW2VLpZKraiWUyOHr4wLqW6R"
        "NcXnrQRQU2AXGfGGAyorNpkGgFJgK4tISxNIymTRSarRK96UgOkc9CiSmo/bbvz3XoxIurlRskbGChwFtKqJldZFTTlHMZAe"
        "mmok03JA+XibvCMyQJhYrNbUf9kMIP4q35DP+zXusKde+t3s0NdvYj1oSPEBYoEWI3CNdddfZjS9W+ND40EdUP8NJwXGio2a"
        "8JeBUknJl0r8UD5+IPTudo1C+ANtqBTn",
    ),
    "IQ1_S": _Grid(
        "iq1s_grid",
        (2048, 8),
        (-1, 0, 1),
        "eNp1W4tWJEsIg/z/R+86lQTC6J7rxdaeflRBCAGr3j/QducPQNvV/H2egHMiaJsfaF2RHwRtN+JCOBcE7f/T4wY4N4Jv+Pnv"
        "c7fm8/Z6END+3PZzTPtz+ebH33nP/vz4c8wH734WfIH+XPFd8H2OxwDPL/A5sF8YtP9NLADOQoD25257YXAWCLQ/rweuN/hY"
        "4PO9Y8RC4iwoaH8uw/uC14kFx1l40PbZANB+noLffv4H2n4bgrMxLfvOfI//fo59C22YvuDvOzYStJ+PL0/8nPb5fdkj3yN3"
        "bHjTQsfo8GTQdiMcBLSzFM9ButNhQNt2HPC8Z6FjpGP9LBO4rr85Gmi7j+N9bvz8F+/67xi0nwehHyxH/fjBclgcx5VTcVF8"
        "Eo5Dg/az6yA+gKsJPv1yeBzHB+0HF1Yg4AQEaN/aEQ9WoHzcDAx0EAcwLivkadnWMSLAPtsDLj+4/OByv/uA148AxAlEfX2W"
        "YQUmToCCthmo/SLjPQ6fD1zHHbha+s/lVyAD+nlHYOMEOBToga7tYJQTHhRy6F+A6Bsd4c0t76UXavcGULzqFavgp6u4atsH"
        "9OygfTD0AGT/RkD1YKcfXry7CbB6XwG0AramhY7RkYkeDDAQ3+fBz/FJmKEa8WQvXF72AdcZzHTgxUD0BJ8LfB5wvUG02QAL"
        "2ud+8+YCXtA+N5ncSoxwbNUG1wXMAhcGeTEouE1c3OZiPAxZDzM7IIBvWugYPCbwv2XcCaDA50Rk+H62aT8P1ozmB4bYO69E"
        "0rJ4Vrlaj6hYlodoTfQFfQ/+nh4EeVIjEhSQHlazBN1ct+15OAmsaaFjJjQgPVUJrmmhY2TiE2TXbEEkRCgx2vM7EmXTQsfg"
        "MTKRgvblw4kgQQdzc8HHjA1+Ffg97fOQ53+bwUFMblyJCZq/p3XkMpFDCR38uawS/Huxh8cr4TctZEkAAFoSge4kAD8GC7P0"
        "jv2SjhFF4IdeoIAhEHKaipuTOGE+LKIB2gatQu0TUYwjMC4WIUGNjzeIahvxGjxvIL9XCIvICBlFaJoWOgaPkYSn34Y8PgY+"
        "LZ+bzwdeLwgRPfHxr/feEGfA8qnPBUF/WilLS9VIIgXabhIr8Pjd6d2eHyZ0gRkAvO+zeLaiChtiJg4hbKmoHsD8PMRNpICs"
        "fEBYQVCbVQ7BwyF6YmOPLQ3xE5t5eXqIoNiGIbomR0xWVBYTpRviSJQ26lWgxmRKRTmjltEJRgMJ3cOG5RWYXTuEVG9FRDF2"
        "a41xCCtonYKYuUEi++gkSB9fpt5LCtqXl8H6bAgvDvEFrVKdiDCxhPmYfrAIck9ID4noeXImA4ItwcpBhdmUQ6xfPgXzKP1g"
        "n6Kcp70GgogrRcu1xGhEzFv2AYJX9qUXMJ2AS7AJ/LNN+xwDhOlhSiL6oH1wPJSBzJseR0zj+mIzLS1Fs0Aw86KFCoZHPRjq"
        "ruAfLEwhgVNQqFYQd6hdNK1CQ+Tf1KYWaQHjfBUiOAUJTmGCU6CAlktnRqnChZjqvVbqkGvIw9+2DgNVoQPatx2M46VYgAXQ"
        "q7+4f2A8r8IIp0DSK9SK2V0o6cvUj4wYLKDeYzGOV0GFU1hpid7HptDCKbhAa+2itupkecwyliK+U6bqP2QpJr0p2FzFVsg/"
        "XVHtTYmFI/MceedUOapmVMV8yzsdbN2yjSuKSllGcozkl5bs0imrSD5xRVK/yyhGRrGNYlbPbG+Z48oY5pKUJyw/CGmFWkc2"
        "kDzwoGcVtCzL22JqZ3lsESDL11u2+oxTjrriEuKf8rNFPkQKkGWnt1ygL3CuDSqrbDzloksjQUNnudenvDM3FFdRblBM9inM"
        "T5nlVFNZPnllTnnkAt5lUUU506d8cZkCF/pRlqj88CudcsLlQ2eZoDKARHbKAEudtwxImu9a4A/6LtpuJVYSWR+6XknPW/T8"
        "0HDRbjODTlo9lblKAsjjgh5f+tukvVMyyxVEV0VTyRVQQR8NPZ30UDTQHn7pn0vzpG9ftM3JS2B86BYIBla4k1a5Vjs0aujT"
        "oUtKoQqFQ48uLRIdshBEOiT606I9ojeXxhz60tQ5TV+kmJCuNOnKq1pWLV2/04Cb7p3emYmUvo0oTJ83PZ4u01eatMiv2qyz"
        "i6Luh0XOzrRlqKlMR33Sj4tWpQ2c9CASa0EsVGCpuJMGBP+1tenvNGAQ7VAbR2DrI7TJaY4KaNjuhOc+cGwfrIRdu2olvF44"
        "7QOfVsgq4bEPHAruRgKrgKc+cCQYGvghzODAiqvdCrj4Cw6c4xXOorJ9BMYThq4+GF4KK7Pw+j08+oTDyoDh3k51lW5q96xg"
        "O27CuLaq393PGbbTnYw9x23sA5Vu0Ge7+2yvtxW5vX2201njCqkqJTq3o8/y32Xvr+Um2mhZkcvbfZaxc7n6LI9DovO1+7yO"
        "k1XlY/txOx+rz+29S+fyduo+QnHnj/1p/cMRkvUDIDulOqE6T8QRnvVBnAtUnwuBUh9SqO4jWOtGOAL2vXF1PgDOg0joppLI"
        "Sp10g/u8hfBGPnh1vkAtrXIL5b00IDHH/cLUqS2o/7UA4l61cj3oHlt474U9G3q1cDjCvBYSZ0Grz8JSuJfS0iPFhpBPyYh8"
        "73sjwI1AITYEtAX+nFYNgd497rVhahT0aRRo416tPRtXu9m1NrI6NxSn0dCn4QCJ850bj8oNr6FgsfF1Nx7ZUZGCJUeQNNKn"
        "gdG7qNiO0ukY1ekgOI5SG6wXZaxOB8JpjOgLx7Gq08FwHa3cepJjheNVpwPqEtTv39FyTM+aHAeFeh/HQfGHo6ox07LV4cB6"
        "hVrvvJVDIQ2FvEeL18gI6Pii4AoAnvpULjBOIiBqTS/BQyY3INw4qo7A0JJXTJ1MwFRMi2CaF085s3hKfd/iU61Zk+nak2X+"
        "EnhWUPuPQMTvAYkbmNsZtGirEgYDFDdAa3dh3G1x6a7ugboFFao6XPP2cllsTLiBXVvNXIEe6tgEunuK6OhcathEQFBLW9rA"
        "UKuW2kBRnYCBAxwQltEXUAhAKWeeXRWPpKbSsaIadbXprcgqEa4SLa5GFTWzLhfAcICsOgEMB8gqWNhwzA7y8A1w1Ql0OIAH"
        "OeVI0r8CIA4QQrYQwEjUcENTHQS3LtqTXfR+emV42Wi/fRqhksy1itUJtPlW8FPVAd6n84CNfJAXTIsfsBLEMzsarlqCKkQD"
        "FrLQMYEd7R6PNF8PbyzAF/a66Y3DUE5DV08qEd0ids1MxE4MtXo4Fi9WA9ijfX7zbAyr+KlNqjGpTK5QJ8E4KRC81VDGH4mn"
        "hmllIqo1k0CxEEtDlxKnBFXVkahqXWordmZw0A6WSm7wc+DnsHe4cgzZjW6chjdO41u9FzHEM97rxriGTW7CrBzDdeNcLaM+"
        "DXScRrqaOmagtUTrGXulKKqprEnMEmfUYqwcV3XiRscYqhN55Xjpd0JHNvQVQTfBV453ugWulpmYdOV4pnuG6n1Jq5EyO4QB"
        "MSiAMzCgllyfwQGcAQKcQQITjopxP3UPTDzk8mcMzzEkCciEpEKtc5NDBMWidU9Pco2HwapLx7iXNazKMS0jl6Adh+gIUyvI"
        "4Ez2VI4/aezJrSol2z6DEQILLY4Q0+NAYjUVYz4mVMixniFYOY7jSzprKAvomdmyIGoJdTwhrKivHGNxiV05luIetryHvcYh"
        "eNUx0PFF+N7djQk4Ax9qGavCqxzf8Blq9vZuKq6WTN3xClWINb03fm7EwzUZjRrNxMX0IqJlTlLYJY8pA8cNKscK/EYKQhHZ"
        "yrEAH6jXbaKb7X2XWJXtd6+UvkSMK9vnXkm1yz3SV9H2NlU39VEFXdGW/iLcle1jE29cAp5tXg+N/EXMK6ebTdQ1iNNnEEep"
        "V6FWu8myCL2aGCL2le1Pi4kdU51DBbVV4qiVbUOT8s72nif7KqfXYBKgpFQxtTXUk05Z+yKrcKhsd7mAUGSIcd0CorKNBAq5"
        "/lOJyjaQZ8xVaCji3J2vaIu411DZ1jDDq2xbOBV2dF2nUKlsM/gdKtsGjngP6yAHpqTYVMr37hqpIKqU4c1ATf0LWSilHO7C"
        "qVLGNoOVXF0pP1tcr5SVzXgrVVtTTKWSSpnXDNlct7YqNwNhnbKo17RTfXIxc2RNQ1anTAkgJ09N6ipUCRwZEPijMKzVW92T"
        "rKioQv0wt4DUABsf3INswnrICqtSvnIHWKydeqv/dkms0qxRrK42e5reptiQ2Aw6ZBlrAMMSasspltCcpVjZVMoh/pubSpnD"
        "hW4lKnFIYArgShTxTJTkBkVzRdRNoVwpF7jykldpt/uU+TiFtDlnluX2TRXDLqc7yuFFDhEdeYGzQFPgpiCqr0I8C/BaMbEr"
        "x8qyzMxB5ZjKrcoyysxCZZPLo4pyxxKp3rCyDDEzEUdQzFaWEWYuKhuWUDBDT2swUhWxhlcgmzR/Rll6//WD6bgprVKTBIhK"
        "umxxx3T4DGDCg5gk/Y+OmjJV0sslaAQNHM8gJFTSOl9MXEvYV0nLfIpomP+YUDSo9jTaHgAN+mGGqOkm044cvkclvbDwctI0"
        "Tpq24KK0K1dWF11p8gowlWnJSscVZJQGVDuXOwBbRJ4Ik6gpGBemuVivgEdLJC5CCIuVcAaTnAr4wYEfgjV44/mTgjrCkHKA"
        "MYalGPfEX5XhbkaPM2CLM2ircFT1XBk2RqBK93eFIHdXLq50W3/JTcXmNTJh9yr8KmyJPWn7le21regUvKo2mo8YhTMIjDMQ"
        "jDMYrMeWQFZ5e68uzuCwPq7TK3/ss/TvH7vjP/I=",
    ),
}


@cache
def grid(name: str) -> npt.NDArray[np.float32]:
    """The code book of IQ type `name` ("IQ2_XXS"; IQ1_M shares IQ1_S's) as float32 (points, coordinates)."""
    table = _GRIDS["IQ1_S" if name == "IQ1_M" else name]
    positions = np.frombuffer(zlib.decompress(base64.b64decode(table.encoded)), dtype=np.uint8)
    values = np.asarray(table.levels, dtype=np.float32)[positions].reshape(table.shape)
    values.setflags(write=False)
    return values
