// BraTS (Multimodal Brain Tumor Segmentation challenge; Menze et al., IEEE TMI 2015; Bakas et al.
// 2017/2018): the published layout, shared by the reader ("brats") and the synthetic writer.
//   <root>/{HGG,LGG}/<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz
// as in MICCAI_BraTS_2019_Data_Training (case e.g. BraTS19_CBICA_ASW_1): co-registered,
// skull-stripped volumes of 240 x 240 x 155 voxels of 1 mm (int16 images, background 0) and the
// segmentation, labels 0 background, 1 necrotic / non-enhancing tumour core, 2 peritumoral oedema,
// 4 enhancing tumour. BraTS 2020/2021 name the files the same way (<case>_<modality>.nii.gz).
#pragma once

#include <array>
#include <string_view>

namespace facet::data::brats {

inline constexpr std::array<std::string_view, 4> kModalities = {"flair", "t1", "t1ce", "t2"};
inline constexpr std::string_view kSegName = "seg";

}  // namespace facet::data::brats
