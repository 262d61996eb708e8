// fusionrt._native: the Python binding of the native kernels. runtime/native.py validates and wraps it.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <stdexcept>
#include <string>

#include "convert_resize.hpp"

namespace nb = nanobind;
using fusionrt::PixelFormat;

namespace {

using SrcArray = nb::ndarray<const std::uint8_t, nb::c_contig, nb::device::cpu>;
using OutArray = nb::ndarray<std::uint8_t, nb::ndim<3>, nb::c_contig, nb::device::cpu>;

PixelFormat parse_format(const std::string& name) {
    if (name == "bgr") return PixelFormat::BGR;
    if (name == "rgb") return PixelFormat::RGB;
    if (name == "yuyv") return PixelFormat::YUYV;
    if (name == "uyvy") return PixelFormat::UYVY;
    if (name == "nv12") return PixelFormat::NV12;
    if (name == "i420") return PixelFormat::I420;
    throw std::invalid_argument("fmt: unknown pixel format '" + name + "'");
}

// Re-checks what runtime/native.py already checked: no input can make the kernel read or write out of bounds.
void convert_resize_into(SrcArray src, const std::string& fmt, int height, int width, OutArray out,
                         bool rgb, bool letterbox, int pad, int threads) {
    const PixelFormat format = parse_format(fmt);
    const bool chroma_pairs = format != PixelFormat::BGR && format != PixelFormat::RGB;
    if (height <= 0 || width <= 0 || (chroma_pairs && width % 2) ||
        ((format == PixelFormat::NV12 || format == PixelFormat::I420) && height % 2))
        throw std::invalid_argument("src: bad size " + std::to_string(height) + "x" + std::to_string(width) + " for " + fmt);
    if (src.size() != fusionrt::source_bytes(format, height, width))
        throw std::invalid_argument("src: holds " + std::to_string(src.size()) + " bytes; " + fmt + " at " +
                                    std::to_string(height) + "x" + std::to_string(width) + " needs " +
                                    std::to_string(fusionrt::source_bytes(format, height, width)));
    if (out.shape(0) == 0 || out.shape(1) == 0 || out.shape(2) != 3)
        throw std::invalid_argument("out: expected a non-empty HxWx3 uint8 array");
    if (pad < 0 || pad > 255) throw std::invalid_argument("pad: expected 0..255");
    const fusionrt::Source s{src.data(), height, width, format};
    const fusionrt::Target d{out.data(), int(out.shape(0)), int(out.shape(1)), rgb, letterbox, std::uint8_t(pad)};
    nb::gil_scoped_release released;
    fusionrt::convert_resize(s, d, threads);
}

}  // namespace

NB_MODULE(_native, m) {
    m.doc() = "fusionrt's native kernels (see runtime/native.py for the checked Python API)";
    m.def("convert_resize_into", &convert_resize_into, nb::arg("src").noconvert(), nb::arg("fmt"), nb::arg("height"),
          nb::arg("width"), nb::arg("out").noconvert(), nb::arg("rgb"), nb::arg("letterbox"), nb::arg("pad"),
          nb::arg("threads"));
}
